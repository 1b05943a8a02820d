// Runs a wasm32-wasip1 build (a benchmark, or a test binary as cargo's runner) under Node's
// WASI, on V8 like workerd: `node scripts/wasi.mjs FILE.wasm [ARGS...]`.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

// The corpus files of EDGEGUARD_BENCH_CORPUS are read through a preopened root.
const pass = Object.fromEntries(
  Object.entries(env).filter(([k]) => k.startsWith("EDGEGUARD_BENCH_")),
);
const wasi = new WASI({
  version: "preview1",
  args: argv.slice(2),
  env: pass,
  preopens: pass.EDGEGUARD_BENCH_CORPUS ? { "/": "/" } : {},
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));
