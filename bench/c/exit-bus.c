/*
 * C baseline for the `exit-bus` benchmark: port-I/O exits of a 64-bit user-mode guest (CPL 3),
 * each handled inline in a plain KVM_RUN loop — the floor kvmpool's exit paths are held to.
 *
 * One VM, 2 MiB of memory at GPA 0, set up as packages/core/src/cpu/modes.ts does for 'user':
 *   0x1000  GDT: null, kernel code/data, user code/data (DPL 3), 64-bit TSS descriptor (0x28)
 *   0x2000  TSS, with an I/O permission bitmap (all zero: every port allowed) and its 0xff end
 *   0x5000  PML4 → 0x6000 PDPT → 0x7000 PD: 2 MiB user pages identity-mapping 1 GiB
 *   CS 0x1b / SS 0x23 (DPL 3), CR0 PE|MP|ET|NE|WP|AM|PG, CR4 PAE|OSFXSR|OSXMMEXCPT,
 *   EFER LME|LMA, RFLAGS IOPL 3.
 * Four vCPUs, one per guest (the code is at CODE; keep in step with bench/src/exit-bus-guests.ts):
 *   vCPU 0  OUT_LOOP   1: out %al,(%dx) ; jmp 1b          (port 0x3f0, forever)
 *   vCPU 1  IN_LOOP    1: in (%dx),%al  ; jmp 1b          (port 0x3f2, forever)
 *   vCPU 2  UART_BULK  rcx bytes out to 0x3f8 (`out %al,(%dx)` loop), then out to 0x3f1 (done)
 *   vCPU 3  SPIN       1: inc %rax ; jmp 1b                (no exits; kicked out of KVM_RUN)
 *
 * Batch protocol (driven by bench/src/exit-bus.ts through CProcess): prints "ready", then for
 * each line on stdin:
 *   "OUT K"   runs K more OUT exits of vCPU 0 and prints the elapsed ns for all K;
 *   "IN K"    runs K more IN exits of vCPU 1, writing the answer (a counter) into kvm_run, and
 *             prints the elapsed ns;
 *   "UART N"  points vCPU 2 at UART_BULK with rcx = N, runs it to the done port (N exits,
 *             one per byte, plus the done exit), checks it saw N bytes, prints the elapsed ns;
 *   "IOCTL N" makes N trivial ioctls (KVM_CHECK_EXTENSION) and prints the elapsed ns;
 *   "KICK N"  lets vCPU 3 (SPIN, in its own thread) run, kicks it out of KVM_RUN N times,
 *             each awaited, and prints the N kick-to-acknowledgement times in ns;
 * and exits 0 at end of input. Any failure is reported on stderr with exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define GDT_AT 0x1000u
#define TSS_AT 0x2000u
#define PML4_AT 0x5000u
#define PDPT_AT 0x6000u
#define PD_AT 0x7000u
#define CODE 0x10000u
#define TSS_IOMAP_OFFSET 0x68u
#define TSS_LIMIT (TSS_IOMAP_OFFSET + 0x2000u)

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE 0x1b
#define SEL_UDATA 0x23
#define SEL_TSS 0x28

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_AM (1ull << 18)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_RW 2ull
#define PTE_US 4ull
#define PTE_PS 0x80ull

#define OUT_PORT 0x3f0
#define DONE_PORT 0x3f1
#define IN_PORT 0x3f2
#define UART_PORT 0x3f8

/* Offsets of the three guests in CODE. */
#define OUT_LOOP_AT 0x00u
#define IN_LOOP_AT 0x10u
#define UART_BULK_AT 0x20u
#define SPIN_AT 0x40u

static const uint8_t OUT_LOOP[] = {
  0x66, 0xba, 0xf0, 0x03, /*     mov  $0x3f0, %dx  */
  0xee,                   /* 1:  out  %al, (%dx)   */
  0xeb, 0xfd,             /*     jmp  1b           */
};
static const uint8_t IN_LOOP[] = {
  0x66, 0xba, 0xf2, 0x03, /*     mov  $0x3f2, %dx  */
  0xec,                   /* 1:  in   (%dx), %al   */
  0xeb, 0xfd,             /*     jmp  1b           */
};
static const uint8_t UART_BULK[] = {
  0x66, 0xba, 0xf8, 0x03, /*     mov  $0x3f8, %dx  */
  0x88, 0xc8,             /* 1:  mov  %cl, %al     */
  0xee,                   /*     out  %al, (%dx)   */
  0xff, 0xc9,             /*     dec  %ecx         */
  0x75, 0xf9,             /*     jnz  1b           */
  0x66, 0xba, 0xf1, 0x03, /*     mov  $0x3f1, %dx  */
  0xee,                   /*     out  %al, (%dx)   */
};

static const uint8_t SPIN[] = {
  0x48, 0xff, 0xc0, /* 1:  inc  %rax  */
  0xeb, 0xfb,       /*     jmp  1b    */
};

static int kvm_fd, vm_fd;
static size_t run_size;
static uint8_t *mem;

struct vcpu {
  int fd;
  struct kvm_run *run;
};
static struct vcpu vcpus[4];

static void die(const char *what) {
  fprintf(stderr, "exit-bus: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void fail(const char *what) {
  fprintf(stderr, "exit-bus: %s\n", what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put64(uint64_t gpa, uint64_t v) { memcpy(mem + gpa, &v, 8); }

static struct kvm_segment flat(int code, uint16_t selector) {
  struct kvm_segment s;
  memset(&s, 0, sizeof s);
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = code ? 11 : 3;
  s.present = 1;
  s.dpl = (selector & 3) ? 3 : 0;
  s.db = code ? 0 : 1;
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  return s;
}

static struct kvm_segment tss_segment(void) {
  struct kvm_segment s;
  memset(&s, 0, sizeof s);
  s.base = TSS_AT;
  s.limit = TSS_LIMIT;
  s.selector = SEL_TSS;
  s.type = 11; /* 64-bit TSS, busy */
  s.present = 1;
  return s;
}

/* The 8-byte GDT descriptor of a segment (limit in pages when g). */
static uint64_t descriptor(const struct kvm_segment *s) {
  uint64_t limit = s->g ? (s->limit >> 12) : s->limit;
  uint64_t d = limit & 0xffff;
  d |= (s->base & 0xffffff) << 16;
  d |= (uint64_t)(s->type & 0xf) << 40;
  d |= (uint64_t)(s->s & 1) << 44;
  d |= (uint64_t)(s->dpl & 3) << 45;
  d |= (uint64_t)(s->present & 1) << 47;
  d |= ((limit >> 16) & 0xf) << 48;
  d |= (uint64_t)(s->avl & 1) << 52;
  d |= (uint64_t)(s->l & 1) << 53;
  d |= (uint64_t)(s->db & 1) << 54;
  d |= (uint64_t)(s->g & 1) << 55;
  d |= ((s->base >> 24) & 0xff) << 56;
  return d;
}

/* GDT, TSS with its I/O bitmap, and user page tables, as modes.ts writes them for 'user'. */
static void write_tables(void) {
  struct kvm_segment segs[] = { flat(1, SEL_KCODE), flat(0, SEL_KDATA), flat(1, SEL_UCODE), flat(0, SEL_UDATA) };
  put64(GDT_AT, 0);
  for (int i = 0; i < 4; i++) put64(GDT_AT + 8 * (i + 1), descriptor(&segs[i]));
  struct kvm_segment tss = tss_segment();
  put64(GDT_AT + 40, descriptor(&tss));
  put64(GDT_AT + 48, (tss.base >> 32) & 0xffffffff);
  memset(mem + TSS_AT, 0, TSS_LIMIT + 1); /* a zeroed bitmap grants every port */
  uint16_t iomap = TSS_IOMAP_OFFSET;
  memcpy(mem + TSS_AT + 0x66, &iomap, 2);
  mem[TSS_AT + TSS_LIMIT] = 0xff;

  uint64_t flags = PTE_P | PTE_RW | PTE_US;
  memset(mem + PML4_AT, 0, 0x3000);
  put64(PML4_AT, PDPT_AT | flags);
  put64(PDPT_AT, PD_AT | flags);
  for (uint64_t i = 0; i < 512; i++) put64(PD_AT + 8 * i, (i << 21) | flags | PTE_PS);
}

static void set_cpuid(int fd) {
  int n = 256;
  struct kvm_cpuid2 *c = calloc(1, sizeof *c + (size_t)n * sizeof(struct kvm_cpuid_entry2));
  if (!c) die("calloc");
  c->nent = (uint32_t)n;
  if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(fd, KVM_SET_CPUID2, c) < 0) die("KVM_SET_CPUID2");
  free(c);
}

static void set_regs(struct vcpu *v, uint64_t rip, uint64_t rcx) {
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = rip;
  regs.rcx = rcx;
  regs.rsp = 0x80000;
  regs.rflags = 0x2 | 0x3000; /* IOPL 3 */
  if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

static void create_vcpu(struct vcpu *v, int id, uint64_t rip) {
  v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);
  if (v->fd < 0) die("KVM_CREATE_VCPU");
  v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (v->run == MAP_FAILED) die("mmap(kvm_run)");
  set_cpuid(v->fd);
  struct kvm_sregs sregs;
  if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment code = flat(1, SEL_UCODE), data = flat(0, SEL_UDATA);
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = tss_segment();
  sregs.gdt.base = GDT_AT;
  sregs.gdt.limit = 7 * 8 - 1;
  sregs.cr3 = PML4_AT;
  sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
  sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
  sregs.efer = EFER_LME | EFER_LMA;
  if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_sregs got;
  if (ioctl(v->fd, KVM_GET_SREGS, &got) < 0) die("KVM_GET_SREGS");
  if (got.cr0 != sregs.cr0 || got.efer != sregs.efer) fail("the host did not keep the user-mode CR0/EFER");
  set_regs(v, rip, 0);
}

/* KVM_RUN once; the exit must be port I/O to `port` in `direction`. */
static void run_io(struct vcpu *v, uint16_t port, uint8_t direction) {
  if (ioctl(v->fd, KVM_RUN, 0) < 0) die("KVM_RUN");
  struct kvm_run *r = v->run;
  if (r->exit_reason != KVM_EXIT_IO || r->io.port != port || r->io.direction != direction) {
    fprintf(stderr, "exit-bus: expected io %s port 0x%x, got exit reason %u (port 0x%x, direction %u)\n",
            direction == KVM_EXIT_IO_OUT ? "out" : "in", port, r->exit_reason, r->io.port, r->io.direction);
    exit(1);
  }
}

static uint64_t out_batch(long k) {
  struct vcpu *v = &vcpus[0];
  volatile uint8_t sink = 0;
  uint64_t t0 = now_ns();
  for (long i = 0; i < k; i++) {
    run_io(v, OUT_PORT, KVM_EXIT_IO_OUT);
    sink = *((uint8_t *)v->run + v->run->io.data_offset); /* take the byte, as a device would */
  }
  (void)sink;
  return now_ns() - t0;
}

static uint64_t in_batch(long k) {
  static uint8_t answer;
  struct vcpu *v = &vcpus[1];
  uint64_t t0 = now_ns();
  for (long i = 0; i < k; i++) {
    run_io(v, IN_PORT, KVM_EXIT_IO_IN);
    *((uint8_t *)v->run + v->run->io.data_offset) = answer++;
  }
  return now_ns() - t0;
}

static uint64_t uart_batch(long n) {
  struct vcpu *v = &vcpus[2];
  set_regs(v, CODE + UART_BULK_AT, (uint64_t)n);
  long bytes = 0;
  uint8_t expect = (uint8_t)n;
  uint64_t t0 = now_ns();
  for (;;) {
    if (ioctl(v->fd, KVM_RUN, 0) < 0) die("KVM_RUN");
    struct kvm_run *r = v->run;
    if (r->exit_reason != KVM_EXIT_IO || r->io.direction != KVM_EXIT_IO_OUT) {
      fprintf(stderr, "exit-bus: uart guest: unexpected exit reason %u\n", r->exit_reason);
      exit(1);
    }
    if (r->io.port == DONE_PORT) break;
    if (r->io.port != UART_PORT) fail("uart guest: OUT to an unexpected port");
    uint8_t byte = *((uint8_t *)r + r->io.data_offset);
    if (byte != expect) fail("uart guest: byte out of sequence");
    expect--;
    bytes += r->io.count;
  }
  uint64_t dt = now_ns() - t0;
  if (bytes != n) fail("uart guest: byte count differs from the request");
  return dt;
}

/* n × KVM_CHECK_EXTENSION on the system fd: the cost of a trivial ioctl (for --profile). */
static uint64_t ioctl_batch(long n) {
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0) die("KVM_CHECK_EXTENSION");
  return now_ns() - t0;
}

/*
 * Kicks, as kvmpool does them: vCPU 3 runs SPIN in its own thread with SIGUSR1 blocked except
 * inside KVM_RUN (KVM_SET_SIGNAL_MASK); a kick sets immediate_exit and sends SIGUSR1 with
 * pthread_kill; the thread takes the EINTR, consumes the signal with sigtimedwait, counts an
 * acknowledgement and wakes the kicker, which sleeps on that count in a futex (re-sending the
 * signal every millisecond without an answer). Between batches the thread is parked.
 */
static pthread_t kick_tid;
static atomic_int kick_acks;
static atomic_int kick_running; /* 1: run the guest, 0: park */
static atomic_int kick_parked;

static void futex_wait(atomic_int *word, int expected, long timeout_ns) {
  struct timespec ts = { 0, timeout_ns };
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, timeout_ns > 0 ? &ts : NULL, NULL, 0);
}

static void futex_wake(atomic_int *word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Ends with the process. */
static void *kick_thread(void *arg) {
  (void)arg;
  struct vcpu *v = &vcpus[3];
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  struct { struct kvm_signal_mask head; uint8_t set[8]; } mask;
  mask.head.len = 8;
  memset(mask.set, 0, sizeof mask.set); /* nothing blocked inside KVM_RUN */
  if (ioctl(v->fd, KVM_SET_SIGNAL_MASK, &mask) < 0) die("KVM_SET_SIGNAL_MASK");
  struct timespec zero = { 0, 0 };
  for (;;) {
    /* Parked: drop a kick that came after the last acknowledgement. */
    while (sigtimedwait(&usr1, NULL, &zero) > 0) {
    }
    v->run->immediate_exit = 0;
    atomic_store(&kick_parked, 1);
    futex_wake(&kick_parked);
    while (!atomic_load(&kick_running)) futex_wait(&kick_running, 0, 0);
    while (sigtimedwait(&usr1, NULL, &zero) > 0) {
    }
    v->run->immediate_exit = 0;
    atomic_store(&kick_parked, 0);
    while (atomic_load(&kick_running)) {
      if (ioctl(v->fd, KVM_RUN, 0) == 0) fail("kick guest: unexpected exit");
      if (errno != EINTR) die("KVM_RUN");
      sigtimedwait(&usr1, NULL, &zero);
      v->run->immediate_exit = 0;
      atomic_fetch_add(&kick_acks, 1);
      futex_wake(&kick_acks);
    }
  }
  return NULL; /* not reached */
}

static void start_kick_thread(void) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* inherited by the kick thread */
  if (pthread_create(&kick_tid, NULL, kick_thread, NULL) != 0) fail("pthread_create");
}

/* One kick; returns once the vCPU thread has acknowledged it. */
static void kick_once(void) {
  int before = atomic_load(&kick_acks);
  vcpus[3].run->immediate_exit = 1;
  pthread_kill(kick_tid, SIGUSR1);
  while (atomic_load(&kick_acks) == before) {
    futex_wait(&kick_acks, before, 1000000);
    if (atomic_load(&kick_acks) == before) pthread_kill(kick_tid, SIGUSR1);
  }
}

/* Runs the spinning vCPU, times n kicks, parks it again; prints the n latencies in ns. */
static void kick_batch(long n) {
  static uint64_t lat[100000];
  if (n > 100000) fail("KICK: too many");
  while (!atomic_load(&kick_parked)) futex_wait(&kick_parked, 0, 1000000);
  atomic_store(&kick_running, 1);
  futex_wake(&kick_running);
  struct timespec settle = { 0, 2000000 };
  nanosleep(&settle, NULL);
  for (long i = 0; i < n; i++) {
    uint64_t t0 = now_ns();
    kick_once();
    lat[i] = now_ns() - t0;
  }
  /* Out of KVM_RUN, and parked. */
  atomic_store(&kick_running, 0);
  while (!atomic_load(&kick_parked)) {
    vcpus[3].run->immediate_exit = 1;
    pthread_kill(kick_tid, SIGUSR1);
    futex_wait(&kick_parked, 0, 1000000);
  }
  for (long i = 0; i < n; i++) printf(i ? " %llu" : "%llu", (unsigned long long)lat[i]);
  printf("\n");
  fflush(stdout);
}

int main(void) {
  kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd < 0) die("open(/dev/kvm)");
  int mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  run_size = (size_t)mmap_size;
  vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  if (vm_fd < 0) die("KVM_CREATE_VM");
  mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap(guest memory)");
  struct kvm_userspace_memory_region region = {
    .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)mem,
  };
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  write_tables();
  memcpy(mem + CODE + OUT_LOOP_AT, OUT_LOOP, sizeof OUT_LOOP);
  memcpy(mem + CODE + IN_LOOP_AT, IN_LOOP, sizeof IN_LOOP);
  memcpy(mem + CODE + UART_BULK_AT, UART_BULK, sizeof UART_BULK);
  create_vcpu(&vcpus[0], 0, CODE + OUT_LOOP_AT);
  create_vcpu(&vcpus[1], 1, CODE + IN_LOOP_AT);
  create_vcpu(&vcpus[2], 2, CODE + UART_BULK_AT);
  memcpy(mem + CODE + SPIN_AT, SPIN, sizeof SPIN);
  create_vcpu(&vcpus[3], 3, CODE + SPIN_AT);
  start_kick_thread();
  printf("ready\n");
  fflush(stdout);

  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    char op[8];
    long n;
    if (sscanf(line, "%7s %ld", op, &n) != 2 || n <= 0 || n > 100000000) {
      fprintf(stderr, "exit-bus: bad request %s", line);
      return 1;
    }
    uint64_t ns;
    if (strcmp(op, "OUT") == 0) ns = out_batch(n);
    else if (strcmp(op, "IN") == 0) ns = in_batch(n);
    else if (strcmp(op, "UART") == 0) ns = uart_batch(n);
    else if (strcmp(op, "IOCTL") == 0) ns = ioctl_batch(n);
    else if (strcmp(op, "KICK") == 0) {
      kick_batch(n);
      continue;
    } else {
      fprintf(stderr, "exit-bus: unknown request %s", line);
      return 1;
    }
    printf("%llu\n", (unsigned long long)ns);
    fflush(stdout);
  }
  return 0;
}
