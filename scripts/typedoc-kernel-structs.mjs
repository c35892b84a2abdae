// TypeDoc plugin: the fields of KVM's kernel structs (declared once in
// packages/core/src/ffi/kvm-abi.ts with defineStruct) are the kernel's own fields, named as in
// <linux/kvm.h> and <asm/kvm.h>. Each gets that sentence as its comment, so the
// notDocumented check covers everything else without a comment per register.
import { Comment, Converter, ReflectionKind } from 'typedoc';

const ABI_FILE = /packages\/core\/src\/ffi\/kvm-abi\.ts$/;

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_CREATE_DECLARATION, (context, reflection) => {
    if (!reflection.kindOf(ReflectionKind.Property) || reflection.comment) return;
    const symbol = context.getSymbolFromReflection(reflection);
    const decl = symbol?.declarations?.[0];
    if (!decl || !ABI_FILE.test(decl.getSourceFile().fileName)) return;
    const struct = decl.parent?.parent?.arguments?.[0]?.text;
    const where = struct ? `\`struct ${struct}\`` : 'the kernel struct';
    reflection.comment = new Comment([{ kind: 'text', text: `The field \`${reflection.name}\` of ${where}, as in <linux/kvm.h>.` }]);
  });
}
