/**
 * Benchmark runner: `node bench/dist/main.js [--quick] [--profile] <name>… | all`, or `--list`.
 * Runs the named benchmarks one after another; each prints its table and writes
 * bench/results/<name>.json.
 */
import { parseArgs } from 'node:util';
import type { Benchmark } from './harness.js';
import { BENCHMARKS, findBenchmark } from './registry.js';

const USAGE = `usage: npm run bench -- [--quick] [--profile] <name>… | all
       npm run bench -- --list

  --quick    fewer iterations (a smoke run, not a measurement)
  --profile  also print the benchmark's breakdown (e.g. time per step), if it has one
  --list     list the benchmarks`;

function names(): string {
  return BENCHMARKS.map((b) => b.name).join(', ');
}

function list(): string {
  const width = Math.max(...BENCHMARKS.map((b) => b.name.length));
  return BENCHMARKS.map((b) => `  ${b.name.padEnd(width)}  ${b.description}`).join('\n');
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = args;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.list) {
    console.log(list());
    return;
  }
  if (positionals.length === 0) fail(`name a benchmark (one of: ${names()}), or "all"\n${USAGE}`);

  const chosen: Benchmark[] = [];
  for (const name of positionals) {
    const found = name === 'all' ? BENCHMARKS : [findBenchmark(name)];
    if (found[0] === undefined) fail(`unknown benchmark "${name}"; known: ${names()}`);
    for (const b of found) if (b && !chosen.includes(b)) chosen.push(b);
  }

  let first = true;
  for (const b of chosen) {
    if (!first) console.log('');
    first = false;
    await b.run({ quick: values.quick ?? false, profile: values.profile ?? false });
  }
}

function parse() {
  return parseArgs({
    options: {
      quick: { type: 'boolean' },
      profile: { type: 'boolean' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
