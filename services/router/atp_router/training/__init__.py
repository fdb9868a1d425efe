"""atp-train: fit a router artifact from a labeled data set or from the observer's logged decisions."""
