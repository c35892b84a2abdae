/*
 * C baseline for the `sandbox` benchmark: the reset + call loop of
 * packages/core/src/sandbox/sandbox-vm.ts, on the same guest ELF, with plain ioctls.
 *
 * Set-up (once): parse the ELF64 (PT_LOAD segments, the ELF entry `_kvmpool_entry` and the
 * global STT_FUNC symbols of .symtab); KVM_CREATE_VM; one slot of `memory` bytes at GPA 0 with
 * KVM_MEM_LOG_DIRTY_PAGES; the 64-bit user-mode system area at 0x1000 as in
 * packages/core/src/cpu/modes.ts (GDT, TSS + I/O bitmap granting every port, PML4 → PDPT → PD
 * of 2 MiB user pages identity-mapping memory rounded up to 2 MiB); the segments copied to
 * their addresses (from 1 MiB) with .bss zeroed; a vCPU with the host's supported CPUID,
 * user-mode sregs (CPL 3, IOPL 3); `kvmpool_init` run if exported; then the pristine state:
 * the dirty log cleared, a copy of all memory and KVM_GET_FPU.
 *
 * Memory layout (sandbox-vm.ts): [system area 0x1000–0xafff][call area 0xc000][image from
 * 1 MiB]…[stack][input region][output region] — the last two at the top of memory, the stack
 * growing down from the input region.
 *
 * One call of export `fn` with `input`:
 *   copy the input into the input region; KVM_SET_REGS (rip = ELF entry, rsp = input base,
 *   rflags = 0x3002, r15 = fn's address, rdi/rsi = input base/length, rdx/rcx = output
 *   base/size); KVM_RUN until the OUT to port 0x701 (host calls on port 0x700 are served:
 *   "inc" returns its argument with every byte + 1); read the return value at 0xc000 + 64
 *   (checked 0 ≤ value ≤ output size); copy the output out; then the reset: KVM_GET_DIRTY_LOG
 *   and every dirtied page (plus pages the host wrote) copied back from the pristine copy, the
 *   used input bytes zeroed, KVM_SET_FPU(pristine).
 *
 * Usage: sandbox <guest.elf> <memory> <input size> <output size> <input length> [preset-ad | hot-pages]
 * The input is <input length> bytes, byte i = (i * 7 + 3) & 0xff (as in bench/src/sandbox.ts).
 * `preset-ad` (an experiment for --profile, not the baseline): the page-table entries are
 * written with their Accessed (and, in the 2 MiB PDEs, Dirty) bits already set, so the CPU's
 * page walks never write the page tables and they drop out of every call's dirty set.
 * `hot-pages`: the reset of packages/core/src/sandbox/dirty-tracker.ts with a warm-up call
 * (SandboxPoolOptions.warmUp), in C. It turns on KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, so
 * KVM_GET_DIRTY_LOG neither clears nor protects. Once the pristine state is captured, one call
 * of `sum` runs, and the pages it wrote stay in the log and writable from then on. Every reset
 * copies them back. Every other dirty page is cleared and protected again with
 * KVM_CLEAR_DIRTY_LOG.
 * Prints "ready <pages a reset copies> <step names…>" and answers each line on stdin:
 *   "N"        N calls of `sum` (checked); their N durations in ns
 *   "H N"      N calls of `host_once` (checked); their N durations in ns
 *   "S N"      N calls of `sum`, each timed by step; N × STEPS durations in ns (call-major)
 * and exits 0 at end of input. Any failure is reported on stderr with exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define SYSTEM_AREA 0x1000u
#define GDT (SYSTEM_AREA)
#define TSS (SYSTEM_AREA + 0x1000u)
#define PML4 (SYSTEM_AREA + 0x4000u)
#define PDPT (SYSTEM_AREA + 0x5000u)
#define TSS_IOMAP_OFFSET 0x68u
#define TSS_LIMIT (TSS_IOMAP_OFFSET + 0x2000u)
#define IMAGE_MIN 0x100000u
#define MIN_STACK (64u * 1024u)

#define CALL_AREA 0xc000u
#define CALL_OP 0
#define CALL_A(i) (8 + 8 * (i))
#define CALL_RET 56
#define CALL_VALUE 64
#define PORT_HOSTCALL 0x700
#define PORT_RETURN 0x701
#define OP_PRINT 1
#define OP_ABORT 2
#define OP_CALL 3

#define SEL_USER_CODE 0x1b
#define SEL_USER_DATA 0x23
#define SEL_TSS 0x28

#define PTE_P 1ull
#define PTE_RW 2ull
#define PTE_US 4ull
#define PTE_PS 0x80ull
#define PTE_A 0x20ull
#define PTE_D 0x40ull

/* Keep in step with SANDBOX_STEPS in bench/src/sandbox.ts. */
enum { STEP_INPUT, STEP_SET_REGS, STEP_RUN, STEP_OUTPUT, STEP_DIRTY_LOG, STEP_COPY_PAGES, STEP_ZERO_INPUT, STEP_SET_FPU, STEPS };
static const char *const STEP_NAMES[STEPS] = {
  "input", "set-regs", "run", "output", "dirty-log", "copy-pages", "zero-input", "set-fpu",
};

static void die(const char *what) {
  fprintf(stderr, "sandbox: %s: %s\n", what, strerror(errno));
  exit(1);
}

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sandbox: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- ELF64 ---- */

struct elf {
  uint8_t *bytes;
  size_t size;
  uint64_t entry;
};

static struct elf elf;

static void need(uint64_t off, uint64_t len, const char *what) {
  if (off > elf.size || len > elf.size - off) fail("ELF: %s runs past the end of the file", what);
}

static uint16_t e16(uint64_t at) { uint16_t v; memcpy(&v, elf.bytes + at, 2); return v; }
static uint32_t e32(uint64_t at) { uint32_t v; memcpy(&v, elf.bytes + at, 4); return v; }
static uint64_t e64(uint64_t at) { uint64_t v; memcpy(&v, elf.bytes + at, 8); return v; }

static void read_elf(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat");
  elf.size = (size_t)st.st_size;
  elf.bytes = malloc(elf.size ? elf.size : 1);
  if (!elf.bytes) die("malloc");
  if (read(fd, elf.bytes, elf.size) != (ssize_t)elf.size) die("read(ELF)");
  close(fd);
  if (elf.size < 64 || memcmp(elf.bytes, "\x7f" "ELF", 4) != 0 || elf.bytes[4] != 2 || elf.bytes[5] != 1)
    fail("%s: not a 64-bit little-endian ELF file", path);
  if (e16(16) != 2 || e16(18) != 62) fail("%s: not a static x86-64 executable", path);
  elf.entry = e64(24);
}

/* Copies the PT_LOAD segments into guest memory, zero-filling .bss. */
static void load_segments(uint8_t *mem, uint64_t limit) {
  uint64_t phoff = e64(32);
  uint16_t phentsize = e16(54), phnum = e16(56);
  if (phentsize != 56) fail("ELF: program header size %u", phentsize);
  need(phoff, (uint64_t)phnum * 56, "program headers");
  int loaded = 0;
  for (uint16_t i = 0; i < phnum; i++) {
    uint64_t at = phoff + (uint64_t)i * 56;
    if (e32(at) != 1 /* PT_LOAD */) continue;
    uint64_t offset = e64(at + 8), vaddr = e64(at + 16), filesz = e64(at + 32), memsz = e64(at + 40);
    if (filesz > memsz) fail("ELF: segment %u: file size exceeds memory size", i);
    need(offset, filesz, "a segment");
    if (vaddr < IMAGE_MIN || vaddr + memsz > limit) fail("ELF: segment at 0x%llx is outside the image area", (unsigned long long)vaddr);
    memcpy(mem + vaddr, elf.bytes + offset, filesz);
    memset(mem + vaddr + filesz, 0, memsz - filesz);
    loaded++;
  }
  if (!loaded) fail("ELF: no PT_LOAD segments");
}

/* The address of global function `name` in .symtab, or 0. */
static uint64_t find_function(const char *name) {
  uint64_t shoff = e64(40);
  uint16_t shentsize = e16(58), shnum = e16(60);
  if (shoff == 0 || shnum == 0) return 0;
  if (shentsize != 64) fail("ELF: section header size %u", shentsize);
  need(shoff, (uint64_t)shnum * 64, "section headers");
  for (uint16_t i = 0; i < shnum; i++) {
    uint64_t sh = shoff + (uint64_t)i * 64;
    if (e32(sh + 4) != 2 /* SHT_SYMTAB */) continue;
    uint64_t off = e64(sh + 24), size = e64(sh + 32);
    uint32_t link = e32(sh + 40);
    if (link >= shnum) fail("ELF: bad symbol table link %u", link);
    uint64_t str = shoff + (uint64_t)link * 64;
    uint64_t stroff = e64(str + 24), strsize = e64(str + 32);
    need(off, size, "symbol table");
    need(stroff, strsize, "string table");
    for (uint64_t at = off; at + 24 <= off + size; at += 24) {
      uint8_t info = elf.bytes[at + 4];
      if ((info >> 4) != 1 /* STB_GLOBAL */ || (info & 0xf) != 2 /* STT_FUNC */) continue;
      uint32_t n = e32(at);
      if (n >= strsize) continue;
      const char *s = (const char *)elf.bytes + stroff + n;
      if (strnlen(s, strsize - n) == strsize - n) continue;
      if (strcmp(s, name) == 0) return e64(at + 8);
    }
  }
  return 0;
}

/* ---- the mode tables of modes.ts, `user` mode ---- */

/* The GDT descriptor of a segment (limit in pages when g). */
static uint64_t descriptor(uint64_t base, uint32_t limit, uint8_t type, uint8_t s, uint8_t dpl, uint8_t l, uint8_t db, uint8_t g) {
  uint64_t lim = g ? limit >> 12 : limit;
  uint64_t d = lim & 0xffff;
  d |= (base & 0xffffff) << 16;
  d |= (uint64_t)(type & 0xf) << 40;
  d |= (uint64_t)(s & 1) << 44;
  d |= (uint64_t)(dpl & 3) << 45;
  d |= 1ull << 47; /* present */
  d |= ((lim >> 16) & 0xf) << 48;
  d |= (uint64_t)(l & 1) << 53;
  d |= (uint64_t)(db & 1) << 54;
  d |= (uint64_t)(g & 1) << 55;
  d |= ((base >> 24) & 0xff) << 56;
  return d;
}

static void write_mode_tables(uint8_t *mem, uint64_t map_size, int preset_ad) {
  uint64_t gdt[7] = {
    0,
    descriptor(0, 0xffffffff, 11, 1, 0, 1, 0, 1), /* kernel code, 64-bit */
    descriptor(0, 0xffffffff, 3, 1, 0, 0, 1, 1),  /* kernel data */
    descriptor(0, 0xffffffff, 11, 1, 3, 1, 0, 1), /* user code, 64-bit */
    descriptor(0, 0xffffffff, 3, 1, 3, 0, 1, 1),  /* user data */
    descriptor(TSS, TSS_LIMIT, 11, 0, 0, 0, 0, 0), /* TSS (busy), low word */
    (uint64_t)TSS >> 32,                           /* TSS, high word */
  };
  memcpy(mem + GDT, gdt, sizeof gdt);
  /* A zeroed I/O bitmap grants every port; the byte after it must be 0xff. */
  memset(mem + TSS, 0, TSS_LIMIT + 1);
  uint16_t iomap = TSS_IOMAP_OFFSET;
  memcpy(mem + TSS + 0x66, &iomap, 2);
  mem[TSS + TSS_LIMIT] = 0xff;

  uint64_t flags = PTE_P | PTE_RW | PTE_US | (preset_ad ? PTE_A : 0);
  uint64_t leaf = preset_ad ? PTE_D : 0;
  uint64_t gib = 1ull << 30;
  uint64_t pds = (map_size + gib - 1) / gib;
  memset(mem + PML4, 0, PAGE * (2 + pds));
  put64(mem + PML4, PDPT | flags);
  for (uint64_t g = 0; g < pds; g++) {
    uint64_t pd = PDPT + PAGE * (1 + g);
    put64(mem + PDPT + 8 * g, pd | flags);
    for (uint64_t i = 0; i < 512; i++) {
      uint64_t phys = g * gib + i * 0x200000ull;
      if (phys >= map_size) break;
      put64(mem + pd + 8 * i, phys | flags | leaf | PTE_PS);
    }
  }
}

static struct kvm_segment flat(uint16_t selector, uint8_t type, uint8_t dpl, uint8_t l, uint8_t db) {
  struct kvm_segment s = { .base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .present = 1, .dpl = dpl, .db = db, .s = 1, .l = l, .g = 1 };
  return s;
}

/* ---- the sandbox ---- */

static int kvm_fd, vm_fd, vcpu_fd;
static struct kvm_run *run;
static uint8_t *mem, *pristine;
static uint64_t mem_size, input_base, output_base, input_size, output_size;
static uint64_t *dirty_bitmap;
/* hot-pages: the pages kept writable (set by the reset after the warm-up call), and the bitmap to clear. */
static int hot_mode, hot_capture;
static uint64_t *hot_bitmap, *clear_bitmap;
static size_t bitmap_words;
static struct kvm_regs regs;
static struct kvm_fpu pristine_fpu;
static uint32_t host_dirty[64];
static int host_dirty_n;
static uint64_t input_used;
static uint8_t output[1 << 16];
static uint64_t output_len;

static void mark_host_dirty(uint64_t at, uint64_t len) {
  for (uint64_t p = at / PAGE; p * PAGE < at + len; p++) {
    if (host_dirty_n == (int)(sizeof host_dirty / sizeof host_dirty[0])) fail("too many host-written pages");
    host_dirty[host_dirty_n++] = (uint32_t)p;
  }
}

static void check_range(uint64_t ptr, uint64_t len, const char *what) {
  if (ptr > mem_size || len > mem_size - ptr) fail("host call: %s at 0x%llx is outside guest memory", what, (unsigned long long)ptr);
}

/* Serves a host call (OUT to 0x700): only "inc" (every byte + 1) and print. */
static void host_call(void) {
  uint8_t *ca = mem + CALL_AREA;
  uint64_t op = get64(ca + CALL_OP);
  if (op == OP_PRINT) return;
  if (op != OP_CALL) fail("guest made host call op %llu", (unsigned long long)op);
  uint64_t name = get64(ca + CALL_A(0)), name_len = get64(ca + CALL_A(1));
  uint64_t arg = get64(ca + CALL_A(2)), arg_len = get64(ca + CALL_A(3));
  uint64_t res = get64(ca + CALL_A(4)), cap = get64(ca + CALL_A(5));
  check_range(name, name_len, "name");
  check_range(arg, arg_len, "argument");
  check_range(res, cap, "result buffer");
  if (name_len != 3 || memcmp(mem + name, "inc", 3) != 0) fail("unknown host function %.*s", (int)name_len, (const char *)mem + name);
  if (arg_len > cap) fail("host call: result of %llu bytes is larger than the buffer", (unsigned long long)arg_len);
  for (uint64_t i = 0; i < arg_len; i++) mem[res + i] = (uint8_t)(mem[arg + i] + 1);
  mark_host_dirty(res, arg_len);
  put64(ca + CALL_RET, arg_len);
}

static void run_to_return(void) {
  for (;;) {
    if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      die("KVM_RUN");
    }
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
      if (run->io.port == PORT_RETURN) return;
      if (run->io.port == PORT_HOSTCALL) {
        host_call();
        continue;
      }
    }
    fail("unexpected exit (reason %u)", run->exit_reason);
  }
}

/* One call, up to the copied-out output; `t` (if given) gets the step boundaries. */
static void invoke(uint64_t fn, const uint8_t *input, uint64_t len, uint64_t *t) {
  if (len > input_size) fail("input of %llu bytes is too long", (unsigned long long)len);
  memcpy(mem + input_base, input, len);
  input_used = len;
  if (t) t[1] = now_ns();
  regs.rip = elf.entry;
  regs.rsp = input_base;
  regs.rflags = 0x3002;
  regs.r15 = fn;
  regs.rdi = input_base;
  regs.rsi = len;
  regs.rdx = output_base;
  regs.rcx = output_size;
  if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  if (t) t[2] = now_ns();
  run_to_return();
  if (t) t[3] = now_ns();
  int64_t value = (int64_t)get64(mem + CALL_AREA + CALL_VALUE);
  if (value < 0) fail("guest function returned error %lld", (long long)value);
  if ((uint64_t)value > output_size || (uint64_t)value > sizeof output) fail("guest function returned %lld bytes", (long long)value);
  memcpy(output, mem + output_base, (size_t)value);
  output_len = (uint64_t)value;
  if (t) t[4] = now_ns();
}

/* Back to the pristine state; returns the pages copied back. */
static int reset(uint64_t *t) {
  struct kvm_dirty_log log = { .slot = 0 };
  log.dirty_bitmap = dirty_bitmap;
  memset(dirty_bitmap, 0, bitmap_words * 8);
  if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) die("KVM_GET_DIRTY_LOG");
  if (hot_mode) {
    int clearing = 0;
    for (size_t w = 0; w < bitmap_words; w++) {
      if (hot_capture) hot_bitmap[w] = dirty_bitmap[w]; /* the warm-up's pages: hot from now on */
      clear_bitmap[w] = dirty_bitmap[w] & ~hot_bitmap[w];
      clearing |= clear_bitmap[w] != 0;
    }
    hot_capture = 0;
    if (clearing) {
      struct kvm_clear_dirty_log clear = { .slot = 0, .num_pages = (uint32_t)(mem_size / PAGE), .first_page = 0, .dirty_bitmap = clear_bitmap };
      if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0) die("KVM_CLEAR_DIRTY_LOG");
    }
  }
  if (t) t[5] = now_ns();
  int pages = 0;
  for (size_t w = 0; w < bitmap_words; w++) {
    uint64_t bits = dirty_bitmap[w];
    while (bits) {
      uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
      bits &= bits - 1;
      memcpy(mem + p * PAGE, pristine + p * PAGE, PAGE);
      pages++;
    }
  }
  for (int i = 0; i < host_dirty_n; i++) {
    memcpy(mem + (uint64_t)host_dirty[i] * PAGE, pristine + (uint64_t)host_dirty[i] * PAGE, PAGE);
    pages++;
  }
  host_dirty_n = 0;
  if (t) t[6] = now_ns();
  if (input_used) {
    memset(mem + input_base, 0, input_used);
    input_used = 0;
  }
  if (t) t[7] = now_ns();
  if (ioctl(vcpu_fd, KVM_SET_FPU, &pristine_fpu) < 0) die("KVM_SET_FPU");
  if (t) t[8] = now_ns();
  return pages;
}

static uint64_t parse_num(const char *s, const char *what) {
  char *end;
  unsigned long long v = strtoull(s, &end, 0);
  if (*s == '\0' || *end != '\0') fail("bad %s: %s", what, s);
  return v;
}

static void setup(const char *path, int preset_ad) {
  read_elf(path);
  if (mem_size % PAGE || input_size % PAGE || output_size % PAGE) fail("memory, input and output sizes must be multiples of 4096");
  output_base = mem_size - output_size;
  input_base = output_base - input_size;

  kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd < 0) die("open(/dev/kvm)");
  int mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  if (vm_fd < 0) die("KVM_CREATE_VM");
  if (hot_mode) {
    struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { 1 } };
    if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0) die("KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
  }

  /* Private anonymous memory, like the SharedArrayBuffer backing a kvmpool memory slot. */
  mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap(guest memory)");
  struct kvm_userspace_memory_region region = {
    .slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .guest_phys_addr = 0, .memory_size = mem_size,
    .userspace_addr = (uint64_t)(uintptr_t)mem,
  };
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  bitmap_words = (mem_size / PAGE + 63) / 64;
  dirty_bitmap = calloc(bitmap_words, 8);
  hot_bitmap = calloc(bitmap_words, 8);
  clear_bitmap = calloc(bitmap_words, 8);
  if (!hot_bitmap || !clear_bitmap) die("calloc");
  pristine = malloc(mem_size);
  if (!dirty_bitmap || !pristine) die("malloc");

  uint64_t map_size = (mem_size + 0x1fffff) / 0x200000 * 0x200000;
  write_mode_tables(mem, map_size, preset_ad);
  load_segments(mem, input_base - MIN_STACK);

  vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
  if (vcpu_fd < 0) die("KVM_CREATE_VCPU");
  run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
  if (run == MAP_FAILED) die("mmap(kvm_run)");

  int nent = 256;
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
  if (!cpuid) die("calloc");
  cpuid->nent = (uint32_t)nent;
  if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  free(cpuid);

  struct kvm_sregs sregs;
  if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment code = flat(SEL_USER_CODE, 11, 3, 1, 0), data = flat(SEL_USER_DATA, 3, 3, 0, 1);
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  struct kvm_segment tr = { .base = TSS, .limit = TSS_LIMIT, .selector = SEL_TSS, .type = 11, .present = 1 };
  sregs.tr = tr;
  sregs.gdt.base = GDT;
  sregs.gdt.limit = 7 * 8 - 1;
  sregs.cr3 = PML4;
  sregs.cr4 = (1u << 5) | (1u << 9) | (1u << 10);                                       /* PAE OSFXSR OSXMMEXCPT */
  sregs.cr0 = 1u | (1u << 1) | (1u << 4) | (1u << 5) | (1u << 16) | (1u << 18) | (1ull << 31); /* PE MP ET NE WP AM PG */
  sregs.efer = (1u << 8) | (1u << 10);                                                  /* LME LMA */
  if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
  regs.rflags = 0x3002;
  if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  struct kvm_sregs got;
  if (ioctl(vcpu_fd, KVM_GET_SREGS, &got) < 0) die("KVM_GET_SREGS");
  if (got.cr0 != sregs.cr0 || got.cr4 != sregs.cr4 || got.efer != sregs.efer) fail("this host does not keep 64-bit user mode (CR0/CR4/EFER changed)");

  uint64_t init = find_function("kvmpool_init");
  if (init) {
    invoke(init, NULL, 0, NULL);
  }
  /* Capture: clear the log; from here on it lists what calls write. */
  struct kvm_dirty_log log = { .slot = 0 };
  log.dirty_bitmap = dirty_bitmap;
  if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) die("KVM_GET_DIRTY_LOG");
  if (hot_mode) {
    struct kvm_clear_dirty_log clear = { .slot = 0, .num_pages = (uint32_t)(mem_size / PAGE), .first_page = 0, .dirty_bitmap = dirty_bitmap };
    if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0) die("KVM_CLEAR_DIRTY_LOG");
  }
  memcpy(pristine, mem, mem_size);
  if (ioctl(vcpu_fd, KVM_GET_FPU, &pristine_fpu) < 0) die("KVM_GET_FPU");
  host_dirty_n = 0;
  input_used = 0;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 7 || (argc == 7 && strcmp(argv[6], "preset-ad") != 0 && strcmp(argv[6], "hot-pages") != 0)) {
    fprintf(stderr, "usage: sandbox <guest.elf> <memory> <input size> <output size> <input length> [preset-ad | hot-pages]\n");
    return 2;
  }
  mem_size = parse_num(argv[2], "memory");
  input_size = parse_num(argv[3], "input size");
  output_size = parse_num(argv[4], "output size");
  uint64_t input_len = parse_num(argv[5], "input length");
  hot_mode = argc == 7 && strcmp(argv[6], "hot-pages") == 0;
  setup(argv[1], argc == 7 && !hot_mode);

  uint8_t *input = malloc(input_len ? input_len : 1);
  if (!input) die("malloc");
  uint64_t want_sum = 0;
  for (uint64_t i = 0; i < input_len; i++) {
    input[i] = (uint8_t)((i * 7 + 3) & 0xff);
    want_sum += input[i];
  }
  uint64_t fn_sum = find_function("sum"), fn_host = find_function("host_once");
  if (!fn_sum || !fn_host) fail("the guest exports no sum or host_once");
  if (hot_mode) {
    /* The warm-up call: the pages it writes are the hot set. */
    invoke(fn_sum, input, input_len, NULL);
    hot_capture = 1;
    reset(NULL);
  }

  /* Check both once, then take the page count a reset of `sum` copies (the first calls also
     touch pages for the first time). */
  invoke(fn_sum, input, input_len, NULL);
  if (output_len != 8 || get64(output) != want_sum) fail("sum returned %llu, expected %llu", (unsigned long long)get64(output), (unsigned long long)want_sum);
  reset(NULL);
  invoke(fn_host, input, input_len, NULL);
  if (output_len != input_len) fail("host_once returned %llu bytes", (unsigned long long)output_len);
  for (uint64_t i = 0; i < input_len; i++)
    if (output[i] != (uint8_t)(input[i] + 1)) fail("host_once returned a wrong byte at %llu", (unsigned long long)i);
  reset(NULL);
  invoke(fn_sum, input, input_len, NULL);
  int pages = reset(NULL);

  printf("ready %d", pages);
  for (int s = 0; s < STEPS; s++) printf(" %s", STEP_NAMES[s]);
  printf("\n");
  fflush(stdout);

  char line[64];
  uint64_t *out = NULL;
  size_t cap = 0;
  while (fgets(line, sizeof line, stdin)) {
    char mode = (line[0] == 'S' || line[0] == 'H') ? line[0] : 'N';
    char *end;
    long n = strtol(mode == 'N' ? line : line + 1, &end, 10);
    if (n <= 0 || n > 1000000 || (*end != '\n' && *end != '\0')) fail("bad request %s", line);
    size_t per = mode == 'S' ? STEPS : 1;
    if ((size_t)n * per > cap) {
      cap = (size_t)n * per;
      out = realloc(out, cap * sizeof *out);
      if (!out) die("realloc");
    }
    uint64_t fn = mode == 'H' ? fn_host : fn_sum;
    for (long i = 0; i < n; i++) {
      uint64_t t[STEPS + 1];
      t[0] = now_ns();
      invoke(fn, input, input_len, mode == 'S' ? t : NULL);
      reset(mode == 'S' ? t : NULL);
      uint64_t t1 = now_ns();
      if (mode == 'S') {
        for (int s = 0; s < STEPS; s++) out[(size_t)i * STEPS + (size_t)s] = t[s + 1] - t[s];
      } else {
        out[i] = t1 - t[0];
      }
    }
    if (mode != 'H' ? get64(output) != want_sum : output[0] != (uint8_t)(input[0] + 1)) fail("wrong result");
    for (size_t i = 0; i < (size_t)n * per; i++) printf(i ? " %llu" : "%llu", (unsigned long long)out[i]);
    printf("\n");
    fflush(stdout);
  }
  free(out);
  return 0;
}
