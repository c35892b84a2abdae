#!/usr/bin/env node
/** The `kvmpool` command. Each command is one entry in COMMANDS; `main` only parses and dispatches. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Kvm } from './kvm.js';
import { buildCapsReport, formatCapsReport } from './caps/report.js';
import { runProgram } from './linux/run-command.js';

interface Command {
  usage: string;
  summary: string;
  options: ParseOptions;
  /** Whether the command takes positional arguments (after its name). */
  positionals?: boolean;
  /** The command parses its own arguments: `run` gets them unparsed, as positionals. */
  raw?: boolean;
  /** Returns the exit code. */
  run(values: ParsedValues, positionals: string[]): number | Promise<number>;
}

type ParseOptions = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>;
type ParsedValues = ReturnType<typeof parseArgs>['values'];

const USAGE_ERROR = 2;

/** Opens the device, or prints why not (the error message carries a hint) and returns null. */
function openKvm(path: string): Kvm | null {
  try {
    return Kvm.open(path);
  } catch (e) {
    process.stderr.write(`kvmpool: ${e instanceof Error ? e.message : String(e)}\n`);
    return null;
  }
}

const COMMANDS: Record<string, Command> = {
  caps: {
    usage: 'kvmpool caps [--json] [--device PATH]',
    summary: 'report what this host\'s KVM offers a VMM (capabilities, CPUID, feature MSRs, nested VMX)',
    options: { json: { type: 'boolean' }, device: { type: 'string' } },
    run(values) {
      const kvm = openKvm(typeof values['device'] === 'string' ? values['device'] : '/dev/kvm');
      if (!kvm) return 1;
      try {
        const report = buildCapsReport(kvm);
        process.stdout.write(values['json'] ? `${JSON.stringify(report, null, 2)}\n` : formatCapsReport(report));
        return 0;
      } finally {
        kvm.close();
      }
    },
  },
  run: {
    usage: 'kvmpool run [--timeout MS] [--memory SIZE] [--env NAME=VALUE]… [--file GUEST=HOST]… [--strict] -- PROGRAM [ARG…]',
    summary: 'run a static x86-64 Linux program in a micro-VM: stdin and stdout pass through, its exit code is returned',
    options: {
      timeout: { type: 'string' }, memory: { type: 'string' }, env: { type: 'string', multiple: true }, file: { type: 'string', multiple: true },
      strict: { type: 'boolean' },
    },
    positionals: true,
    run: (values, positionals) => runProgram(values, positionals),
  },
  worker: {
    usage: 'kvmpool worker --queue NAME (--guest FILE | --program FILE | --js) [--redis URL] [--threads N] [--metrics-port N] …',
    summary: 'take sandbox jobs from a BullMQ queue on Redis (needs @kvmpool/queue; `kvmpool worker --help` for every option)',
    options: {},
    raw: true,
    run: (_values, args) => runQueueWorker(args),
  },
};

/**
 * `kvmpool worker` lives in @kvmpool/queue, which depends on core (and on BullMQ); core does not
 * depend on it, so it is resolved at run time, from wherever this package was installed.
 */
async function runQueueWorker(args: string[]): Promise<number> {
  const spec = '@kvmpool/queue';
  let mod: { runWorkerCommand(argv: readonly string[]): Promise<number> };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(spec)) {
      process.stderr.write('kvmpool worker needs the queue package: npm install @kvmpool/queue (next to @kvmpool/core)\n');
      return 1;
    }
    throw e;
  }
  return mod.runWorkerCommand(args);
}

function usage(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
  const lines = Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`);
  const pad = (u: string): string => u.padEnd(width);
  return `usage: kvmpool <command> [options]\n\ncommands:\n${lines.join('\n')}\n  ${pad('kvmpool --help')}  show this help\n  ${pad('kvmpool --version')}  print the package version\n`;
}

/** This package's version, from its package.json (one level above dist/). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
  return `${pkg.name} ${pkg.version}`;
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(usage());
    return name === undefined ? USAGE_ERROR : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`kvmpool: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return USAGE_ERROR;
  }
  if (command.raw) {
    try {
      return await command.run({}, rest);
    } catch (e) {
      process.stderr.write(`kvmpool ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...rest], options: { ...command.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: command.positionals ?? false });
  } catch (e) {
    process.stderr.write(`kvmpool ${name}: ${e instanceof Error ? e.message : String(e)}\nusage: ${command.usage}\n`);
    return USAGE_ERROR;
  }
  if (parsed.values['help']) {
    process.stdout.write(`usage: ${command.usage}\n\n${command.summary}\n`);
    return 0;
  }
  try {
    return await command.run(parsed.values, parsed.positionals);
  } catch (e) {
    process.stderr.write(`kvmpool ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

// A closed pipe (`kvmpool caps | head`) is a normal way for output to end.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
process.exitCode = await main(process.argv.slice(2));
