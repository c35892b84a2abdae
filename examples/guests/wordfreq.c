/*
 * A plain C program for the linux-musl example (examples/src/linux-musl.ts), nothing
 * kvmpool-specific: reads text from stdin, counts each word in a hash table that grows with
 * malloc/calloc, and prints the totals and the most frequent words with printf. The count shown
 * with -n comes from argv, and a greeting from the environment (GREETING), to show both reach
 * the program. Built with `musl-gcc -static -O2`.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  char *word;
  long count;
};

static struct entry *table;
static size_t capacity = 64, used;

static unsigned long hash(const char *s) {
  unsigned long h = 5381;
  while (*s) h = h * 33 + (unsigned char)*s++;
  return h;
}

static void grow(void);

static void add(const char *word) {
  if (2 * (used + 1) > capacity) grow();
  size_t i = hash(word) & (capacity - 1);
  while (table[i].word && strcmp(table[i].word, word) != 0) i = (i + 1) & (capacity - 1);
  if (!table[i].word) {
    table[i].word = strdup(word);
    if (!table[i].word) {
      perror("strdup");
      exit(1);
    }
    used++;
  }
  table[i].count++;
}

static void grow(void) {
  struct entry *old = table;
  size_t old_capacity = capacity;
  capacity *= 2;
  table = calloc(capacity, sizeof *table);
  if (!table) {
    perror("calloc");
    exit(1);
  }
  used = 0;
  for (size_t i = 0; i < old_capacity; i++) {
    if (!old[i].word) continue;
    size_t j = hash(old[i].word) & (capacity - 1);
    while (table[j].word) j = (j + 1) & (capacity - 1);
    table[j] = old[i];
    used++;
  }
  free(old);
}

static int by_count(const void *a, const void *b) {
  const struct entry *x = a, *y = b;
  if (x->count != y->count) return x->count < y->count ? 1 : -1;
  return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
  int top = 3;
  if (argc > 2 && strcmp(argv[1], "-n") == 0) top = atoi(argv[2]);
  table = calloc(capacity, sizeof *table);
  if (!table) return 1;

  size_t len = 0, cap = 32;
  char *word = malloc(cap);
  long words = 0, bytes = 0;
  int c;
  while (word && (c = getchar()) != EOF) {
    bytes++;
    if (isalnum(c)) {
      if (len + 1 == cap) word = realloc(word, cap *= 2);
      if (word) word[len++] = (char)tolower(c);
    } else if (len > 0) {
      word[len] = '\0';
      add(word);
      words++;
      len = 0;
    }
  }
  if (!word) {
    perror("malloc");
    return 1;
  }
  if (len > 0) {
    word[len] = '\0';
    add(word);
    words++;
  }

  struct entry *sorted = malloc((used ? used : 1) * sizeof *sorted);
  if (!sorted) return 1;
  size_t n = 0;
  for (size_t i = 0; i < capacity; i++)
    if (table[i].word) sorted[n++] = table[i];
  qsort(sorted, n, sizeof *sorted, by_count);

  const char *greeting = getenv("GREETING");
  if (greeting) printf("%s\n", greeting);
  printf("%ld bytes, %ld words, %zu distinct (table of %zu slots)\n", bytes, words, n, capacity);
  for (size_t i = 0; i < n && (int)i < top; i++) printf("  %-12s %ld\n", sorted[i].word, sorted[i].count);
  return 0;
}
