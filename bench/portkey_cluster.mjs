// Runs Portkey's gateway in BENCH_WORKERS processes sharing one listener (node:cluster), so it gets the
// same number of worker processes as the other gateways. Usage: node portkey_cluster.mjs ENTRY [ARGS...]
import cluster from "node:cluster";
import { pathToFileURL } from "node:url";

const entry = process.argv[2];
const workers = Math.max(1, parseInt(process.env.BENCH_WORKERS || "1", 10));

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  // A dead worker means the measurement is invalid: stop so the driver reports the target as failed.
  cluster.on("exit", (worker, code) => {
    console.error(`portkey worker ${worker.process.pid} exited (${code})`);
    process.exit(1);
  });
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => {
      for (const id in cluster.workers) cluster.workers[id].process.kill("SIGTERM");
      process.exit(0);
    });
  }
} else {
  // Workers get the primary's arguments; the gateway finds --port=N among them and ignores the rest.
  await import(pathToFileURL(entry).href);
}
