/* The engine's allocator: one region, size classes, see arena.c. */
#ifndef KVMPOOL_ARENA_H
#define KVMPOOL_ARENA_H
#include <stddef.h>
#include "quickjs.h"

/* Maps the region; 0 on success. */
int arena_init(size_t bytes);
extern const JSMallocFunctions arena_functions;
/* Set when an allocation failed at the memory limit (QuickJS may then throw null: no memory for an error). */
extern int arena_limit_hit;

#endif
