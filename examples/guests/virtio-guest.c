/*
 * A virtio-mmio driver for a kernel-less machine guest (64-bit user mode, CPL 3): it finds the
 * virtio devices in the machine's virtio window (0xd0000000 + i * 0x1000), negotiates features
 * (virtio 1.2 §3.1.1), sets up split virtqueues, and then drives virtio-blk, virtio-console and
 * virtio-rng by polling the used rings (VIRTQ_AVAIL_F_NO_INTERRUPT: the devices raise no
 * interrupt) — or, in MODE_IRQ, by waiting for the devices' interrupts (virtio-irq.S).
 *
 * The host says what to do in the parameter page at 0xf000 (struct params) before it starts the
 * machine, and reads what happened from the result page at 0xf400 (struct results) after the guest
 * stopped at the halt port. Text goes out through the virtio console.
 *
 * Build (flat binary at 0x10000; examples/src/build-guest.ts, test/support/build-c.ts):
 *   gcc -O2 -ffreestanding -nostdlib -static -fno-pie -no-pie -mgeneral-regs-only -mno-red-zone
 *       -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables
 *       -T examples/guests/flat.ld virtio-guest.c [virtio-irq.S -DVIRTIO_IRQ] -o virtio-guest.elf
 *   objcopy -O binary virtio-guest.elf virtio-guest.bin
 */
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* ---- what the host asks, what the guest reports ---- */
enum {
  MODE_TOUR = 1,          /* every device once: blk id/read/write/read-back, rng, console echo */
  MODE_HOSTILE = 2,       /* a malformed chain on the disk (arg0: 1 outside RAM, 2 loop, 3 bad head), then reset and recover */
  MODE_BENCH_BLK = 3,     /* arg1 reads of arg0 bytes at sector 0 */
  MODE_BENCH_CONSOLE = 4, /* arg0 bytes out of the console, 64 KiB buffers, 4 in flight */
  MODE_NOTIFY = 5,        /* arg0 round trips of an 8-byte rng request */
  MODE_SNAPSHOT = 6,      /* a 4 KiB read of sector arg0 made available WITHOUT a notify; wait for it */
  MODE_IRQ = 7,           /* like MODE_BENCH_BLK with arg1 reads, waiting for each completion's interrupt */
};

struct params {
  u32 mode;
  u32 flags;        /* FLAG_NO_ECHO: the tour skips the console echo */
  u64 arg0, arg1;
  u64 write_sector; /* where the tour writes its sector */
};
#define FLAG_NO_ECHO 1u

struct results {
  u32 done;           /* 0x00: 1 once the mode finished */
  u32 error;          /* 0x04: the step that failed (0: none) */
  u32 devices;        /* 0x08 */
  u32 device_ids[8];  /* 0x0c */
  u32 blk_features;   /* 0x2c: device features, low word */
  u64 blk_capacity;   /* 0x30 */
  u32 st_id, st_read, st_write, st_readback; /* 0x38: blk statuses */
  u8 id[20];          /* 0x48 */
  u32 rng_len;        /* 0x5c */
  u8 rng[32];         /* 0x60 */
  u8 sector0[64];     /* 0x80 */
  u8 readback[64];    /* 0xc0 */
  u32 status_after;   /* 0x100: HOSTILE: the device status after the bad chain */
  u32 st_recovered;   /* 0x104: HOSTILE: status of the read after the reset */
  u32 submitted;      /* 0x108: SNAPSHOT: the request is available (not notified) */
  u32 interrupts;     /* 0x10c: IRQ: interrupts taken */
  u32 echo_len;       /* 0x110 */
  u8 echo[64];        /* 0x114 */
};

#define PARAMS ((volatile struct params *)0xf000UL)
#define RESULTS ((volatile struct results *)0xf400UL)

/* ---- guest memory map (identity-mapped; the machine has at least 8 MiB) ---- */
#define QUEUE_AREA 0x100000UL  /* one 4 KiB page per queue */
#define BLK_HDR 0x180000UL
#define BLK_STATUS 0x180100UL
#define SCRATCH 0x181000UL     /* small buffers: id, rng, console lines */
#define RX_BUFFERS 0x190000UL  /* console receive buffers, RX_SIZE each */
#define TX_BUFFERS 0x200000UL  /* console transmit buffers, 64 KiB each */
#define DATA 0x400000UL        /* blk data, up to 1 MiB */

/* ---- ports, MMIO, barriers ---- */
#define HALT_PORT 0x500
#define DEBUG_EXIT_PORT 0x501

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 rd32(uintptr_t a) { return *(volatile u32 *)a; }
static inline void wr32(uintptr_t a, u32 v) { *(volatile u32 *)a = v; }
/* x86 is TSO: stores are seen in program order and loads are not reordered with older loads, so
 * the ring protocol needs only the compiler not to move accesses across these points. */
#define barrier() __asm__ volatile("" ::: "memory")
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static void *gmemset(void *d, int c, size_t n) {
  volatile u8 *p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
static void gmemcpy(volatile void *d, const volatile void *s, size_t n) {
  volatile u8 *o = d;
  const volatile u8 *i = s;
  while (n--) *o++ = *i++;
}
void *memset(void *d, int c, size_t n) { return gmemset(d, c, n); }
void *memcpy(void *d, const void *s, size_t n) {
  gmemcpy(d, s, n);
  return d;
}

__attribute__((noreturn)) static void halt(void) {
  for (;;) outb(HALT_PORT, 0);
}
__attribute__((noreturn)) static void fail(u32 step) {
  RESULTS->error = step;
  outb(DEBUG_EXIT_PORT, (u8)step);
  halt();
}

/* ---- virtio-mmio registers (virtio 1.2 §4.2.2) ---- */
#define VIRTIO_BASE 0xd0000000UL
#define VIRTIO_STRIDE 0x1000UL
#define MAX_DEVICES 8
enum {
  R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_DEVICE_FEATURES = 0x010, R_DEVICE_FEATURES_SEL = 0x014,
  R_DRIVER_FEATURES = 0x020, R_DRIVER_FEATURES_SEL = 0x024, R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034,
  R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050, R_INTERRUPT_STATUS = 0x060,
  R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070, R_QUEUE_DESC_LOW = 0x080, R_QUEUE_DESC_HIGH = 0x084,
  R_QUEUE_DRIVER_LOW = 0x090, R_QUEUE_DRIVER_HIGH = 0x094, R_QUEUE_DEVICE_LOW = 0x0a0, R_QUEUE_DEVICE_HIGH = 0x0a4,
  R_CONFIG = 0x100,
};
enum { S_ACKNOWLEDGE = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64, S_FAILED = 128 };
enum { ID_BLOCK = 2, ID_CONSOLE = 3, ID_ENTROPY = 4 };
#define MAGIC 0x74726976u

/* ---- split virtqueues (§2.7) ---- */
#define QSIZE 16
enum { D_NEXT = 1, D_WRITE = 2 };
struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vq {
  uintptr_t regs;
  u16 index;
  volatile struct desc *desc; /* QSIZE descriptors */
  volatile u16 *avail;        /* flags, idx, ring[QSIZE], used_event */
  volatile u8 *used;          /* flags u16, idx u16, ring[QSIZE] of { id u32, len u32 }, avail_event */
  u16 avail_idx, last_used;
};

static struct vq queues[MAX_DEVICES * 2];
static int use_interrupts;

/* Interrupt-driven waits (virtio-irq.S, the SDK's interrupts.inc): its CPL 0 stubs count and flag interrupts;
 * a CPL 3 `hlt` faults into its #GP stub, which waits (sti; hlt) unless an interrupt came since kvmpool_irq_any
 * was cleared. */
#ifdef VIRTIO_IRQ
extern volatile u8 kvmpool_irq_any;
extern volatile u32 kvmpool_irq_counts[256];
extern void virtio_irq_setup(void);
#endif

static void vq_init(unsigned slot, uintptr_t regs, u16 index) {
  struct vq *q = &queues[slot];
  uintptr_t page = QUEUE_AREA + slot * 0x1000UL;
  gmemset((void *)page, 0, 0x1000);
  q->regs = regs;
  q->index = index;
  q->desc = (volatile struct desc *)page;
  q->avail = (volatile u16 *)(page + 16 * QSIZE);
  q->used = (volatile u8 *)(page + 0x800);
  q->avail_idx = q->last_used = 0;
  /* Polling: the device need not interrupt (§2.7.7, VIRTQ_AVAIL_F_NO_INTERRUPT). */
  q->avail[0] = use_interrupts ? 0 : 1;
  wr32(regs + R_QUEUE_SEL, index);
  u32 max = rd32(regs + R_QUEUE_NUM_MAX);
  if (max < QSIZE) fail(10);
  wr32(regs + R_QUEUE_NUM, QSIZE);
  wr32(regs + R_QUEUE_DESC_LOW, (u32)(uintptr_t)q->desc);
  wr32(regs + R_QUEUE_DESC_HIGH, 0);
  wr32(regs + R_QUEUE_DRIVER_LOW, (u32)(uintptr_t)q->avail);
  wr32(regs + R_QUEUE_DRIVER_HIGH, 0);
  wr32(regs + R_QUEUE_DEVICE_LOW, (u32)(uintptr_t)q->used);
  wr32(regs + R_QUEUE_DEVICE_HIGH, 0);
  wr32(regs + R_QUEUE_READY, 1);
}

/* Makes chain `head` available; with `notify`, writes QueueNotify (the ioeventfd, or an exit). */
static void vq_submit(struct vq *q, u16 head, int notify) {
  q->avail[2 + (q->avail_idx % QSIZE)] = head;
  barrier(); /* the ring entry (and the descriptors before it) before the index */
  q->avail_idx++;
  q->avail[1] = q->avail_idx;
  barrier(); /* the index before the notify */
  if (notify) wr32(q->regs + R_QUEUE_NOTIFY, q->index);
}

static int vq_has_used(struct vq *q) { return *(volatile u16 *)(q->used + 2) != q->last_used; }

/* Waits for the next used element; returns the bytes the device wrote, and its chain in *id. */
static u32 vq_wait(struct vq *q, u32 *id) {
#ifdef VIRTIO_IRQ
  if (use_interrupts) {
    for (;;) {
      kvmpool_irq_any = 0; /* first forget "an interrupt came"… */
      barrier();
      /* …acknowledge what the device reports (its level line drops, so the next completion is a new edge)… */
      u32 isr = rd32(q->regs + R_INTERRUPT_STATUS);
      if (isr) {
        wr32(q->regs + R_INTERRUPT_ACK, isr);
        /* MMIO writes are posted (the vCPU does not wait for the device, as with PCI): read a register back
         * so the acknowledgement is applied before we look at the ring. Else a completion between our look
         * and the late acknowledgement would be acknowledged unseen, and its interrupt lost. */
        (void)rd32(q->regs + R_INTERRUPT_STATUS);
      }
      /* …then look: a completion before the acknowledgement is in the ring, one after it interrupts. */
      if (vq_has_used(q)) break;
      __asm__ volatile("hlt" ::: "memory");
    }
  }
#endif
  while (!vq_has_used(q)) cpu_relax();
  barrier(); /* used.idx before the element it covers (the device wrote the element first) */
  volatile u8 *e = q->used + 4 + 8 * (q->last_used % QSIZE);
  u32 head = *(volatile u32 *)e, len = *(volatile u32 *)(e + 4);
  q->last_used++;
  if (id) *id = head;
  return len;
}

/* ---- device initialisation (§3.1.1) ---- */
struct device { uintptr_t regs; u32 id; unsigned k; struct vq *q[2]; };
static struct device devices[MAX_DEVICES];
static unsigned ndevices;
static struct device *blk, *con, *rng;

static u32 wanted_features(u32 id, u32 offered) {
  /* blk: SIZE_MAX 1, SEG_MAX 2, RO 5, BLK_SIZE 6, FLUSH 9 — all informational for this driver. */
  if (id == ID_BLOCK) return offered & ((1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 9));
  return 0;
}

static void device_init(struct device *d) {
  uintptr_t r = d->regs;
  wr32(r + R_STATUS, 0); /* reset */
  wr32(r + R_STATUS, S_ACKNOWLEDGE);
  wr32(r + R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
  wr32(r + R_DEVICE_FEATURES_SEL, 0);
  u32 lo = rd32(r + R_DEVICE_FEATURES);
  wr32(r + R_DEVICE_FEATURES_SEL, 1);
  u32 hi = rd32(r + R_DEVICE_FEATURES);
  if (!(hi & 1)) fail(11); /* VIRTIO_F_VERSION_1 (bit 32) */
  if (d->id == ID_BLOCK) RESULTS->blk_features = lo;
  wr32(r + R_DRIVER_FEATURES_SEL, 0);
  wr32(r + R_DRIVER_FEATURES, wanted_features(d->id, lo));
  wr32(r + R_DRIVER_FEATURES_SEL, 1);
  wr32(r + R_DRIVER_FEATURES, 1);
  wr32(r + R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
  if (!(rd32(r + R_STATUS) & S_FEATURES_OK)) fail(12);
  unsigned nq = d->id == ID_CONSOLE ? 2 : 1;
  for (unsigned i = 0; i < nq; i++) {
    vq_init(2 * d->k + i, r, (u16)i);
    d->q[i] = &queues[2 * d->k + i];
  }
  wr32(r + R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static void discover(void) {
  for (unsigned i = 0; i < MAX_DEVICES; i++) {
    uintptr_t r = VIRTIO_BASE + i * VIRTIO_STRIDE;
    /* An empty slot reads all-ones or 0 (no device on the bus there). */
    if (rd32(r + R_MAGIC) != MAGIC || rd32(r + R_VERSION) != 2) break;
    u32 id = rd32(r + R_DEVICE_ID);
    if (id == 0) continue;
    struct device *d = &devices[ndevices];
    d->regs = r;
    d->id = id;
    d->k = ndevices;
    RESULTS->device_ids[ndevices++] = id;
    if (id == ID_BLOCK && !blk) blk = d;
    if (id == ID_CONSOLE && !con) con = d;
    if (id == ID_ENTROPY && !rng) rng = d;
  }
  RESULTS->devices = ndevices;
  for (unsigned i = 0; i < ndevices; i++) device_init(&devices[i]);
}

/* ---- virtio-console (§5.3): queue 0 receiveq, queue 1 transmitq ---- */
#define RX_SIZE 256
#define RX_COUNT 4
#define TX_SLOT 0x10000UL

static void con_post_rx(u16 slot) {
  struct vq *q = con->q[0];
  q->desc[slot].addr = RX_BUFFERS + slot * RX_SIZE;
  q->desc[slot].len = RX_SIZE;
  q->desc[slot].flags = D_WRITE;
  q->desc[slot].next = 0;
  vq_submit(q, slot, 1);
}

static void con_write(const void *text, u32 len) {
  if (!con || len == 0) return;
  struct vq *q = con->q[1];
  if (len > TX_SLOT) len = TX_SLOT;
  gmemcpy((void *)TX_BUFFERS, text, len);
  q->desc[0].addr = TX_BUFFERS;
  q->desc[0].len = len;
  q->desc[0].flags = 0;
  vq_submit(q, 0, 1);
  vq_wait(q, 0);
}

static u32 slen(const char *s) {
  u32 n = 0;
  while (s[n]) n++;
  return n;
}
static void con_puts(const char *s) { con_write(s, slen(s)); }

static void con_hex(const volatile u8 *p, u32 n) {
  static const char digits[] = "0123456789abcdef";
  char out[2 * 32 + 1];
  if (n > 32) n = 32;
  for (u32 i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\n';
  con_write(out, 2 * n + 1);
}

/* Reads one line (up to '\n', at most cap bytes) from the receive queue; returns its length. */
static u32 con_readline(volatile u8 *line, u32 cap) {
  u32 n = 0;
  for (;;) {
    u32 head;
    u32 len = vq_wait(con->q[0], &head);
    if (head >= RX_COUNT || len > RX_SIZE) fail(20);
    const volatile u8 *b = (const volatile u8 *)(RX_BUFFERS + head * RX_SIZE);
    int eol = 0;
    for (u32 i = 0; i < len; i++) {
      if (b[i] == '\n') eol = 1;
      else if (!eol && n < cap) line[n++] = b[i];
    }
    con_post_rx((u16)head);
    if (eol) return n;
  }
}

/* Many transmit buffers in flight (up to 4 of 64 KiB): the bulk path. */
static void con_bulk(u64 total) {
  struct vq *q = con->q[1];
  for (u32 s = 0; s < 4; s++) gmemset((void *)(TX_BUFFERS + s * TX_SLOT), 'a' + s, TX_SLOT);
  u64 sent = 0;
  u32 inflight = 0, slot = 0;
  while (sent < total || inflight > 0) {
    if (sent < total && inflight < 4) {
      u32 len = total - sent < TX_SLOT ? (u32)(total - sent) : (u32)TX_SLOT;
      q->desc[slot].addr = TX_BUFFERS + slot * TX_SLOT;
      q->desc[slot].len = len;
      q->desc[slot].flags = 0;
      vq_submit(q, (u16)slot, 1);
      sent += len;
      inflight++;
      slot = (slot + 1) % 4;
      continue;
    }
    vq_wait(q, 0);
    inflight--;
  }
}

/* ---- virtio-blk (§5.2) ---- */
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8 };
struct blk_hdr { u32 type, reserved; u64 sector; };

/* Builds a request in descriptors 0..2 (header, data, status) and makes it available. */
static void blk_submit(u32 type, u64 sector, uintptr_t buf, u32 len, int notify) {
  struct vq *q = blk->q[0];
  volatile struct blk_hdr *h = (volatile struct blk_hdr *)BLK_HDR;
  h->type = type;
  h->reserved = 0;
  h->sector = sector;
  *(volatile u8 *)BLK_STATUS = 0xff;
  q->desc[0].addr = BLK_HDR;
  q->desc[0].len = sizeof(struct blk_hdr);
  q->desc[0].flags = D_NEXT;
  q->desc[0].next = 1;
  q->desc[1].addr = buf;
  q->desc[1].len = len;
  q->desc[1].flags = D_NEXT | (type == T_OUT ? 0 : D_WRITE);
  q->desc[1].next = 2;
  q->desc[2].addr = BLK_STATUS;
  q->desc[2].len = 1;
  q->desc[2].flags = D_WRITE;
  q->desc[2].next = 0;
  vq_submit(q, 0, notify);
}

static u32 blk_rw(u32 type, u64 sector, uintptr_t buf, u32 len) {
  blk_submit(type, sector, buf, len, 1);
  vq_wait(blk->q[0], 0);
  return *(volatile u8 *)BLK_STATUS;
}

static void tour(void) {
  if (con) {
    for (u16 s = 0; s < RX_COUNT; s++) con_post_rx(s);
    con_puts("virtio-guest: ready\n");
  }
  if (blk) {
    RESULTS->blk_capacity = *(volatile u64 *)(blk->regs + R_CONFIG);
    RESULTS->st_id = blk_rw(T_GET_ID, 0, SCRATCH, 20);
    gmemcpy(RESULTS->id, (void *)SCRATCH, 20);
    RESULTS->st_read = blk_rw(T_IN, 0, DATA, 4096);
    gmemcpy(RESULTS->sector0, (void *)DATA, 64);
    u32 n = 0;
    const volatile u8 *d = (const volatile u8 *)DATA;
    while (n < 64 && d[n] && d[n] != '\n') n++;
    con_puts("blk: sector 0: ");
    con_write((const void *)DATA, n);
    con_puts("\n");
    static const char msg[] = "written by virtio-guest\n";
    gmemset((void *)(DATA + 0x10000), 0, 512);
    gmemcpy((void *)(DATA + 0x10000), msg, sizeof msg - 1);
    RESULTS->st_write = blk_rw(T_OUT, PARAMS->write_sector, DATA + 0x10000, 512);
    RESULTS->st_readback = blk_rw(T_IN, PARAMS->write_sector, DATA + 0x20000, 512);
    gmemcpy(RESULTS->readback, (void *)(DATA + 0x20000), 64);
    con_puts(RESULTS->st_write == 0 ? "blk: write ok\n" : "blk: write refused\n");
  }
  if (rng) {
    struct vq *q = rng->q[0];
    q->desc[0].addr = SCRATCH + 0x100;
    q->desc[0].len = 32;
    q->desc[0].flags = D_WRITE;
    vq_submit(q, 0, 1);
    RESULTS->rng_len = vq_wait(q, 0);
    gmemcpy(RESULTS->rng, (void *)(SCRATCH + 0x100), 32);
    con_puts("rng: ");
    con_hex((const volatile u8 *)(SCRATCH + 0x100), RESULTS->rng_len);
  }
  if (con && !(PARAMS->flags & FLAG_NO_ECHO)) {
    u32 n = con_readline(RESULTS->echo, sizeof RESULTS->echo);
    RESULTS->echo_len = n;
    con_puts("echo: ");
    con_write((const void *)RESULTS->echo, n);
    con_puts("\n");
  }
  con_puts("virtio-guest: done\n");
}

/* A chain the device must refuse; the transport then sets DEVICE_NEEDS_RESET. */
static void hostile(u64 kind) {
  struct vq *q = blk->q[0];
  blk_submit(T_IN, 0, DATA, 4096, 0); /* a valid request, not yet notified… */
  if (kind == 1) q->desc[1].addr = 0xfff0000000000000ULL;   /* …its data outside RAM */
  if (kind == 2) q->desc[2].flags = D_WRITE | D_NEXT;      /* …its last descriptor loops to the first */
  if (kind == 3) q->avail[2 + ((q->avail_idx - 1) % QSIZE)] = 999; /* …its head out of range */
  barrier();
  wr32(q->regs + R_QUEUE_NOTIFY, 0);
  /* Either the device refuses the chain (DEVICE_NEEDS_RESET) or it completes it with an error status. */
  u32 st = 0;
  for (u32 i = 0; i < 200000 && !(st & S_NEEDS_RESET) && !vq_has_used(q); i++) st = rd32(blk->regs + R_STATUS);
  RESULTS->status_after = st;
  if (vq_has_used(q)) {
    vq_wait(q, 0);
    RESULTS->st_read = *(volatile u8 *)BLK_STATUS;
  }
  /* Recover: reset, set the device up again, read. */
  device_init(blk);
  RESULTS->st_recovered = blk_rw(T_IN, 0, DATA, 4096);
  gmemcpy(RESULTS->sector0, (void *)DATA, 64);
}

void main_c(void) {
  u32 mode = PARAMS->mode;
  use_interrupts = mode == MODE_IRQ;
#ifdef VIRTIO_IRQ
  if (use_interrupts) virtio_irq_setup();
#else
  if (use_interrupts) fail(2);
#endif
  discover();
  switch (mode) {
    case MODE_TOUR: tour(); break;
    case MODE_HOSTILE:
      if (!blk) fail(3);
      hostile(PARAMS->arg0);
      break;
    case MODE_BENCH_BLK:
    case MODE_IRQ:
      if (!blk) fail(3);
      for (u64 i = 0; i < PARAMS->arg1; i++) {
        u32 st = blk_rw(T_IN, 0, DATA, (u32)PARAMS->arg0);
        if (st != 0) fail(30);
      }
      gmemcpy(RESULTS->sector0, (void *)DATA, 64);
      break;
    case MODE_BENCH_CONSOLE:
      if (!con) fail(4);
      con_bulk(PARAMS->arg0);
      break;
    case MODE_NOTIFY: {
      if (!rng) fail(5);
      struct vq *q = rng->q[0];
      for (u64 i = 0; i < PARAMS->arg0; i++) {
        q->desc[0].addr = SCRATCH + 0x100;
        q->desc[0].len = 8;
        q->desc[0].flags = D_WRITE;
        vq_submit(q, 0, 1);
        vq_wait(q, 0);
      }
      break;
    }
    case MODE_SNAPSHOT:
      if (!blk) fail(3);
      blk_submit(T_IN, PARAMS->arg0, DATA, 4096, 0);
      RESULTS->submitted = 1;
      vq_wait(blk->q[0], 0);
      RESULTS->st_read = *(volatile u8 *)BLK_STATUS;
      gmemcpy(RESULTS->sector0, (void *)DATA, 64);
      break;
    default: fail(1);
  }
#ifdef VIRTIO_IRQ
  for (unsigned v = 53; v <= 60; v++) RESULTS->interrupts += kvmpool_irq_counts[v];
#endif
  RESULTS->done = 1;
  halt();
}

/* The entry point, first in the image (flat.ld puts .text.entry at 0x10000); the host set rsp. */
__attribute__((section(".text.entry"), naked, noreturn)) void _start(void) {
  __asm__ volatile("and $-16, %rsp\n\tcall main_c\n\tud2");
}
