"""atp-eval: replay a routing dataset through the router and observer, and synthetic bandit environments."""
