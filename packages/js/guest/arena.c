/*
 * The engine's allocator: a bump pointer over one mapped region with a free list per size
 * class (16-byte steps to 1 KiB, then four classes per doubling). Why not musl's malloc: every
 * page a call writes is a page the reset copies back, and on a host with shadow paging each
 * first write to a page also costs a fault. This allocator keeps a call's allocations packed
 * at the top of the heap and reuses freed blocks of the same class, so a small call touches a
 * handful of pages; it does no syscalls after start-up. Fragmentation across classes is the
 * price: the region is sized above the memory limit (the host's memory plan).
 *
 * Block: [u64 class][payload…], the block size a multiple of 16 and the payload 16-aligned.
 * The memory limit is enforced here, on block sizes, as QuickJS's default allocator does.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"

#define HEADER 8
#define CLASSES 192

static uint8_t *bump, *end;
static void *free_list[CLASSES];
int arena_limit_hit;

int arena_init(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1;
  bump = (uint8_t *)p + HEADER; /* blocks start at 8 mod 16: payloads are 16-aligned */
  end = (uint8_t *)p + bytes;
  return 0;
}

/* The class of a block of `total` bytes (header included), and its size. */
static unsigned class_of(size_t total, size_t *csize) {
  size_t t = (total + 15) & ~(size_t)15;
  if (t <= 1024) {
    *csize = t;
    return (unsigned)(t / 16 - 1);
  }
  unsigned p = 63u - (unsigned)__builtin_clzll((unsigned long long)(t - 1));
  size_t step = (size_t)1 << (p - 2);
  size_t c = (t + step - 1) / step * step;
  *csize = c;
  return 64u + (p - 10u) * 4u + (unsigned)(c / step - 5u);
}

static size_t class_size(unsigned k) {
  if (k < 64) return ((size_t)k + 1) * 16;
  unsigned p = (k - 64) / 4 + 10;
  return (size_t)((k - 64) % 4 + 5) << (p - 2);
}

static void *arena_malloc(JSMallocState *s, size_t size) {
  size_t csize;
  unsigned k = class_of(size + HEADER, &csize);
  if (k >= CLASSES || s->malloc_size + csize > s->malloc_limit) {
    arena_limit_hit = 1;
    return NULL;
  }
  uint8_t *b = free_list[k];
  if (b) {
    free_list[k] = *(void **)(b + HEADER);
  } else {
    if ((size_t)(end - bump) < csize) {
      arena_limit_hit = 1;
      return NULL;
    }
    b = bump;
    bump += csize;
  }
  *(uint64_t *)b = k;
  s->malloc_count++;
  s->malloc_size += csize;
  return b + HEADER;
}

static void arena_free(JSMallocState *s, void *ptr) {
  if (!ptr) return;
  uint8_t *b = (uint8_t *)ptr - HEADER;
  unsigned k = (unsigned)*(uint64_t *)b;
  s->malloc_count--;
  s->malloc_size -= class_size(k);
  if (b + class_size(k) == bump) { /* the top block: give it back to the bump pointer */
    bump = b;
    return;
  }
  *(void **)ptr = free_list[k];
  free_list[k] = b;
}

static void *arena_realloc(JSMallocState *s, void *ptr, size_t size) {
  if (!ptr) return size ? arena_malloc(s, size) : NULL;
  if (size == 0) {
    arena_free(s, ptr);
    return NULL;
  }
  uint8_t *b = (uint8_t *)ptr - HEADER;
  unsigned k = (unsigned)*(uint64_t *)b;
  size_t old = class_size(k), csize;
  unsigned nk = class_of(size + HEADER, &csize);
  if (nk >= CLASSES) return NULL;
  if (csize <= old && csize * 2 > old) return ptr; /* still fits, not much too big */
  if (b + old == bump && csize > old) { /* the top block grows in place */
    if (s->malloc_size - old + csize > s->malloc_limit || (size_t)(end - b) < csize) {
      arena_limit_hit = 1;
      return NULL;
    }
    bump = b + csize;
    *(uint64_t *)b = nk;
    s->malloc_size += csize - old;
    return ptr;
  }
  void *n = arena_malloc(s, size);
  if (!n) return NULL;
  memcpy(n, ptr, (csize < old ? csize : old) - HEADER);
  arena_free(s, ptr);
  return n;
}

static size_t arena_usable_size(const void *ptr) {
  return ptr ? class_size((unsigned)*(const uint64_t *)((const uint8_t *)ptr - HEADER)) - HEADER : 0;
}

const JSMallocFunctions arena_functions = {arena_malloc, arena_free, arena_realloc, arena_usable_size};
