/*
 * Guest of the `sandbox` benchmark (bench/src/sandbox.ts, bench/c/sandbox.c): small,
 * deterministic exports, so a call's cost is the sandbox's, not the work's.
 *   sum            the sum of the input bytes, as a u64 (8 bytes of output)
 *   host_once      one synchronous host call: kvmpool_host_call("inc", input) → its result
 *   host_main_once one host call to a main-thread (async) host function, "inc_main"
 */
#include "kvmpool.h"

static uint64_t sum_bytes(const uint8_t *in, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += in[i];
  return s;
}

KVMPOOL_EXPORT long sum(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  if (cap < 8) return -1;
  uint64_t s = sum_bytes(in, n);
  memcpy(out, &s, 8);
  return 8;
}

KVMPOOL_EXPORT long host_once(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  return kvmpool_host_call("inc", in, n, out, cap);
}

KVMPOOL_EXPORT long host_main_once(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  return kvmpool_host_call("inc_main", in, n, out, cap);
}
