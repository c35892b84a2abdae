/*
 * C baseline for the `lifecycle` benchmark: the whole life of a tiny VM, per iteration:
 *   KVM_CREATE_VM; 2 MiB of guest memory (mmap MAP_SHARED|MAP_ANONYMOUS,
 *   KVM_SET_USER_MEMORY_REGION); copy a one-byte real-mode guest (`hlt`); KVM_CREATE_VCPU and
 *   mmap its kvm_run; real-mode sregs and regs; KVM_RUN to the HLT exit (checked); munmap
 *   kvm_run, close the vCPU and the VM, munmap the guest memory.
 *
 * Batch protocol (driven by bench/src/c-process.ts, so the C and Node cases alternate in one
 * run): prints "ready" once /dev/kvm is open, then for each line read on stdin:
 *   "N"    runs N iterations and prints their N durations in ns on one line;
 *   "S N"  runs N iterations timing each step and prints N × STEPS durations in ns on one line
 *          (iteration-major, steps in the order of STEP_NAMES);
 * and exits 0 at end of input. Any failure is reported on stderr with exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define GUEST_AT 0x1000u
#define CR0_PE 1ull
#define CR0_PG (1ull << 31)

enum { STEP_CREATE_VM, STEP_ADD_MEMORY, STEP_WRITE_GUEST, STEP_CREATE_VCPU, STEP_SETUP_REGS, STEP_RUN, STEP_CLOSE, STEPS };
/* Keep in step with LIFECYCLE_STEPS in bench/src/lifecycle.ts. */
static const char *const STEP_NAMES[STEPS] = {
  "create-vm", "add-memory", "write-guest", "create-vcpu", "setup-regs", "run", "close",
};

static const uint8_t GUEST[] = { 0xf4 }; /* hlt */

static int kvm_fd;
static size_t run_size;

static void die(const char *what) {
  fprintf(stderr, "lifecycle: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One VM lifecycle. With `steps`, stores the duration of each step there. */
static void iteration(uint64_t *steps) {
  uint64_t t[STEPS + 1];
  t[0] = now_ns();

  int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  t[1] = now_ns();

  uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap(guest memory)");
  struct kvm_userspace_memory_region region = {
    .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)mem,
  };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  t[2] = now_ns();

  memcpy(mem + GUEST_AT, GUEST, sizeof GUEST);
  t[3] = now_ns();

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap(kvm_run)");
  t[4] = now_ns();

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment *segs[] = { &sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss };
  for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
    segs[i]->base = 0;
    segs[i]->selector = 0;
  }
  sregs.cr0 &= ~(CR0_PE | CR0_PG);
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = GUEST_AT;
  regs.rflags = 0x2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  t[5] = now_ns();

  if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
  if (run->exit_reason != KVM_EXIT_HLT) {
    fprintf(stderr, "lifecycle: expected a HLT exit, got exit reason %u\n", run->exit_reason);
    exit(1);
  }
  t[6] = now_ns();

  munmap(run, run_size);
  close(vcpu);
  close(vm);
  munmap(mem, MEM_SIZE);
  t[7] = now_ns();

  if (steps)
    for (int s = 0; s < STEPS; s++) steps[s] = t[s + 1] - t[s];
}

int main(void) {
  kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd < 0) die("open(/dev/kvm)");
  int mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  run_size = (size_t)mmap_size;
  printf("ready");
  for (int s = 0; s < STEPS; s++) printf(" %s", STEP_NAMES[s]);
  printf("\n");
  fflush(stdout);

  char line[64];
  uint64_t *out = NULL;
  size_t cap = 0;
  while (fgets(line, sizeof line, stdin)) {
    int by_step = line[0] == 'S';
    char *end;
    long n = strtol(by_step ? line + 1 : line, &end, 10);
    if (n <= 0 || n > 1000000 || (*end != '\n' && *end != '\0')) {
      fprintf(stderr, "lifecycle: bad request %s", line);
      return 1;
    }
    size_t per = by_step ? STEPS : 1;
    if ((size_t)n * per > cap) {
      cap = (size_t)n * per;
      out = realloc(out, cap * sizeof *out);
      if (!out) die("realloc");
    }
    for (long i = 0; i < n; i++) {
      if (by_step) {
        iteration(out + (size_t)i * STEPS);
      } else {
        uint64_t t0 = now_ns();
        iteration(NULL);
        out[i] = now_ns() - t0;
      }
    }
    for (size_t i = 0; i < (size_t)n * per; i++) printf(i ? " %llu" : "%llu", (unsigned long long)out[i]);
    printf("\n");
    fflush(stdout);
  }
  free(out);
  close(kvm_fd);
  return 0;
}
