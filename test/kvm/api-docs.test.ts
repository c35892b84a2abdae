/**
 * The API reference (`npm run docs`): typedoc over the four packages' public entry points
 * (typedoc.json) converts and validates with no warning at all, which with
 * `validation.notDocumented` means every public export, member and option field has a comment;
 * and no name that only `@kvmpool/core/internal` or `@kvmpool/queue/internal` exports shows up in it.
 *
 * It needs no /dev/kvm, but it sits in the kvm project, which runs one file at a time: it takes
 * about 7 s alone, and well past 30 s when it shares the two cores with the parallel unit files.
 */
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { Application, type ProjectReflection, type Reflection } from 'typedoc';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every name a module exports (values and types), by the TypeScript checker. */
function exportedNames(files: string[]): Map<string, Set<string>> {
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true,
  });
  const checker = program.getTypeChecker();
  const out = new Map<string, Set<string>>();
  for (const f of files) {
    const sf = program.getSourceFile(f);
    const sym = sf && checker.getSymbolAtLocation(sf);
    if (!sym) throw new Error(`no module symbol for ${f}`);
    out.set(f, new Set(checker.getExportsOfModule(sym).map((s) => s.name)));
  }
  return out;
}

async function buildReference(): Promise<{ project: ProjectReflection; warnings: string[] }> {
  const app = await Application.bootstrapWithPlugins({ options: `${ROOT}typedoc.json`, logLevel: 'Warn' });
  const warnings: string[] = [];
  const log = app.logger.log.bind(app.logger);
  app.logger.log = (message, level) => {
    if (level >= 2) warnings.push(message);
    log(message, level);
  };
  const project = await app.convert();
  if (!project) throw new Error(`typedoc did not convert: ${warnings.join('\n')}`);
  app.validate(project);
  return { project, warnings };
}

describe('API reference', () => {
  it('builds from the public entry points with every export documented and no internal names', async () => {
    process.chdir(ROOT);
    const { project, warnings } = await buildReference();
    expect(warnings, warnings.slice(0, 20).join('\n')).toEqual([]);

    const modules = project.children ?? [];
    expect(modules.map((m) => m.name).sort()).toEqual(['@kvmpool/core', '@kvmpool/devices', '@kvmpool/queue', '@kvmpool/worker']);
    const core = modules.find((m) => m.name === '@kvmpool/core')!;
    const documented = new Set((core.children ?? []).map((r: Reflection) => r.name));

    const index = `${ROOT}packages/core/src/index.ts`;
    const internal = `${ROOT}packages/core/src/internal.ts`;
    const names = exportedNames([index, internal]);
    const publicNames = names.get(index)!;
    const internalOnly = [...names.get(internal)!].filter((n) => !publicNames.has(n));
    // The check means something only if internal.ts really has names of its own.
    expect(internalOnly.length).toBeGreaterThan(50);
    expect(internalOnly.filter((n) => documented.has(n))).toEqual([]);
    // And the reference has what the index exports.
    expect([...publicNames].filter((n) => !documented.has(n))).toEqual([]);

    // The same for @kvmpool/queue: everything its index exports, nothing only its internal entry has
    // (the job codec, the private redis-server starter).
    const queue = modules.find((m) => m.name === '@kvmpool/queue')!;
    const queueDocumented = new Set((queue.children ?? []).map((r: Reflection) => r.name));
    const queueIndex = `${ROOT}packages/queue/src/index.ts`;
    const queueInternal = `${ROOT}packages/queue/src/internal.ts`;
    const queueNames = exportedNames([queueIndex, queueInternal]);
    const queuePublic = queueNames.get(queueIndex)!;
    const queueInternalOnly = [...queueNames.get(queueInternal)!].filter((n) => !queuePublic.has(n));
    expect(queueInternalOnly).toEqual(expect.arrayContaining(['encodeRequest', 'decodeReturn', 'startRedisServer', 'RedisServer']));
    expect(queueInternalOnly.filter((n) => queueDocumented.has(n))).toEqual([]);
    expect(queuePublic.size).toBeGreaterThan(20);
    expect([...queuePublic].filter((n) => !queueDocumented.has(n))).toEqual([]);
    // Its classes' user-facing members are there, their #private state is not.
    const queueMembers = (cls: string): Set<string> =>
      new Set(((queue.children ?? []).find((r: Reflection) => r.name === cls) as { children?: Reflection[] } | undefined)?.children?.map((r) => r.name) ?? []);
    expect(['call', 'callJson', 'run', 'eval', 'apply', 'enqueue', 'enqueueMany', 'result', 'close', 'name', 'queue'].filter((n) => !queueMembers('SandboxQueue').has(n))).toEqual([]);
    expect(['close', 'metrics', 'name', 'concurrency'].filter((n) => !queueMembers('SandboxWorker').has(n))).toEqual([]);

    // Machine's members for tests and tools (TSDoc @internal) are not in the reference,
    // though the class has them; its user-facing members are.
    const machine = (core.children ?? []).find((r: Reflection) => r.name === 'Machine');
    const members = new Set((machine as { children?: Reflection[] } | undefined)?.children?.map((r) => r.name) ?? []);
    const hidden = ['kick', 'injectThreadFault', 'markRestored'];
    const { Machine } = await import('@kvmpool/core');
    for (const name of hidden) expect(typeof (Machine.prototype as unknown as Record<string, unknown>)[name], name).toBe('function');
    expect(hidden.filter((n) => members.has(n))).toEqual([]);
    expect(['start', 'pause', 'resume', 'stop', 'close', 'getRegs'].filter((n) => !members.has(n))).toEqual([]);
  }, 90_000);
});
