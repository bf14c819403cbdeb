/* The test guests' memory contents, shared by init.c (PID 1 under Linux) and bare.c (no
 * kernel at all): page i at generation g holds words that follow from (i, g) alone, so a
 * guest that keeps its generation table in its own memory can check any page at any time,
 * before or after a migration. Half the pages are random (xorshift64 seeded by (i, g)), half
 * structured (compress well), one in eight stays zero. Only +, ^, shifts and a multiply: no
 * 64-bit division, which a 32-bit freestanding build would have to take from libgcc. */
#ifndef RAMSHIFT_TEST_GUEST_PAGES_H
#define RAMSHIFT_TEST_GUEST_PAGES_H

#include <stdint.h>

#define RS_PAGE 4096u

static inline int rs_page_is_zero(uint64_t i) { return (i & 7) == 7; }

static inline uint64_t rs_seed(uint64_t i, uint32_t g) {
  return (i * 0x9E3779B97F4A7C15ull) ^ (g + 1) ^ 0x5bd1e995;
}

/* Word w of page i at generation g; `state` carries the random pages' generator. */
static inline uint64_t rs_word(uint64_t i, uint32_t g, uint32_t w, uint64_t* state) {
  if (w == 0) return i;
  if (w == 1) return g;
  if ((i & 1) == 0) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
  }
  return (i << 24) ^ ((uint64_t)g << 8) ^ (w & 15);
}

static inline void rs_write_page(uint8_t* mem, uint64_t i, uint32_t g) {
  uint64_t *p = (uint64_t*)(mem + i * RS_PAGE), s = rs_seed(i, g);
  for (uint32_t w = 0; w < RS_PAGE / 8; ++w) p[w] = rs_word(i, g, w, &s);
}

/* 1 when page i holds exactly generation g's contents (zeros for a zero page). */
static inline int rs_check_page(const uint8_t* mem, uint64_t i, uint32_t g) {
  const uint64_t* p = (const uint64_t*)(mem + i * RS_PAGE);
  if (rs_page_is_zero(i)) {
    for (uint32_t w = 0; w < RS_PAGE / 8; ++w)
      if (p[w]) return 0;
    return 1;
  }
  uint64_t s = rs_seed(i, g);
  for (uint32_t w = 0; w < RS_PAGE / 8; ++w)
    if (p[w] != rs_word(i, g, w, &s)) return 0;
  return 1;
}

#endif
