/* The QEMU tests' guest without a kernel: the same memory, dirtying and console lines as
 * init.c (see pages.h), as a Multiboot image that QEMU's -kernel starts directly. It boots in
 * well under a second even where QEMU itself runs under emulation (the soft-RoCE VM), where
 * Debian's kernel takes minutes. The command line (QEMU's -append) takes init.c's settings:
 *
 *   RS_MEM_MB=<MiB of pages, default 64> RS_DIRTY_MBPS=<MB/s, up to 3 decimals, default 4>
 *   RS_CORRUPT_PAGE=<n>: for the test of the check itself, one byte of page n changes behind
 *   the guest's back after the fill; its next sweep must report it
 *
 * Pages live from 16 MiB up, their generation table right after them; a 100 Hz PIT tick
 * paces the work (ten slots a second, as init.c's ticks) and the CPU halts in between. */
#include <stdint.h>

#include "pages.h"

#define PAGES_AT (16u << 20)

volatile uint32_t ticks; /* bare.S's timer interrupt counts them */
void isr_timer(void);
void isr_spurious(void);
void isr_fatal(void);

static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

/* --- the serial console (COM1) --- */
static void put_char(char c) {
  while (!(inb(0x3fd) & 0x20)) {
  }
  outb(0x3f8, (uint8_t)c);
}
static void put_str(const char* s) {
  while (*s) put_char(*s++);
}
static void put_u32(uint32_t v) {
  char buf[11];
  int n = 0;
  do buf[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (n) put_char(buf[--n]);
}
static void serial_init(void) {
  outb(0x3f9, 0x00); /* no interrupts */
  outb(0x3fb, 0x80); /* divisor latch */
  outb(0x3f8, 0x01); /* 115200 baud */
  outb(0x3f9, 0x00);
  outb(0x3fb, 0x03); /* 8N1 */
  outb(0x3fa, 0xc7); /* FIFO on */
  outb(0x3fc, 0x0b);
}

void guest_fatal(void) { put_str("guest: CPU exception, halted\n"); }

/* --- interrupts: the IDT, the PICs (IRQ 0 only, at vector 32) and the PIT at 100 Hz --- */
struct gate {
  uint16_t offset_low, selector;
  uint8_t zero, type;
  uint16_t offset_high;
} __attribute__((packed));
static struct gate idt[256];

static void set_gate(int v, void (*fn)(void)) {
  uint32_t a = (uint32_t)fn;
  idt[v] = (struct gate){(uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16)};
}

static void interrupts_init(void) {
  for (int v = 0; v < 256; ++v) set_gate(v, v < 32 ? isr_fatal : isr_spurious);
  set_gate(32, isr_timer);
  struct {
    uint16_t limit;
    uint32_t base;
  } __attribute__((packed)) desc = {sizeof idt - 1, (uint32_t)idt};
  __asm__ volatile("lidt %0" : : "m"(desc));
  outb(0x20, 0x11), outb(0xa0, 0x11); /* PICs: initialise */
  outb(0x21, 0x20), outb(0xa1, 0x28); /* vectors 32.. and 40.. */
  outb(0x21, 0x04), outb(0xa1, 0x02); /* cascade */
  outb(0x21, 0x01), outb(0xa1, 0x01); /* 8086 mode */
  outb(0x21, 0xfe), outb(0xa1, 0xff); /* only IRQ 0 */
  const uint16_t divisor = 11932;     /* 1193182 Hz / 100 */
  outb(0x43, 0x34);
  outb(0x40, (uint8_t)divisor), outb(0x40, (uint8_t)(divisor >> 8));
}

/* --- the command line --- */
/* The value after `key` in `s` in thousandths (digits, an optional '.' and up to 3 decimals),
 * or `fallback` when absent. */
static uint32_t milli_arg(const char* s, const char* key, uint32_t fallback) {
  for (; s && *s; ++s) {
    const char *k = key, *p = s;
    while (*k && *p == *k) ++k, ++p;
    if (*k) continue;
    uint32_t whole = 0, frac = 0, scale = 1000;
    while (*p >= '0' && *p <= '9') whole = whole * 10 + (uint32_t)(*p++ - '0');
    if (*p == '.')
      for (++p; *p >= '0' && *p <= '9' && scale > 1; ++p)
        scale /= 10, frac += (uint32_t)(*p - '0') * scale;
    return whole * 1000 + frac;
  }
  return fallback;
}

void guest_main(const uint32_t* multiboot) {
  serial_init();
  const char* cmdline = (multiboot[0] & 4) ? (const char*)multiboot[4] : 0;
  const uint32_t mb = milli_arg(cmdline, "RS_MEM_MB=", 64000) / 1000;
  const uint32_t dirty_milli = milli_arg(cmdline, "RS_DIRTY_MBPS=", 4000);
  const uint32_t pages = mb << 8;
  uint8_t* mem = (uint8_t*)PAGES_AT;
  uint32_t* gens = (uint32_t*)(PAGES_AT + pages * RS_PAGE);
  const uint32_t need_kib = (PAGES_AT >> 10) + pages * 4 + pages / 256 + 1;
  if (!(multiboot[0] & 1) || multiboot[2] + 1024 < need_kib) {
    put_str("guest: cannot allocate ");
    put_u32(mb);
    put_str(" MiB\n");
    return;
  }
  for (uint32_t i = 0; i < pages; ++i) {
    gens[i] = 0;
    if (!rs_page_is_zero(i)) rs_write_page(mem, i, 0);
  }
  const uint32_t corrupt = milli_arg(cmdline, "RS_CORRUPT_PAGE=", 0) / 1000;
  if (corrupt && corrupt < pages) mem[corrupt * RS_PAGE + 100] ^= 1;
  put_str("guest: filled ");
  put_u32(mb);
  put_str(" MiB, dirtying ");
  put_u32(dirty_milli / 1000);
  put_char('.');
  put_u32(dirty_milli / 100 % 10);
  put_str(" MB/s (no kernel)\n");

  interrupts_init();
  __asm__ volatile("sti");
  uint64_t rng = 88172645463325252ull;
  uint32_t gensum = 0, checked = 0, bad = 0, cursor = 0, sweeps = 0, beat = 0, debt = 0;
  const uint32_t check_per_slot = pages / 40 + 1; /* a full sweep every ~4 s, as init.c */
  uint32_t slot_at = ticks, beat_at = ticks + 100;
  for (;;) {
    while (ticks - slot_at < 10) __asm__ volatile("sti; hlt");
    uint32_t slots = (ticks - slot_at) / 10;
    slot_at += slots * 10;
    if (slots > 10) slots = 10; /* after a long stop (a paused VM): no burst of catching up */
    debt += slots * dirty_milli * 100; /* bytes: thousandths of MB/s x 0.1 s */
    while (debt >= RS_PAGE) {
      debt -= RS_PAGE;
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const uint32_t i = (uint32_t)(rng >> 32) % pages;
      if (rs_page_is_zero(i)) continue;
      gens[i]++;
      gensum++;
      rs_write_page(mem, i, gens[i]);
    }
    for (uint32_t k = 0; k < check_per_slot; ++k) {
      if (!rs_check_page(mem, cursor, gens[cursor])) {
        if (bad < 5) {
          put_str("guest: page ");
          put_u32(cursor);
          put_str(" does not match generation ");
          put_u32(gens[cursor]);
          put_char('\n');
        }
        bad++;
      }
      checked++;
      if (++cursor == pages) cursor = 0, sweeps++;
    }
    if ((int32_t)(ticks - beat_at) >= 0) {
      beat_at = ticks + 100;
      put_str("heartbeat ");
      put_u32(++beat);
      put_str(" gensum ");
      put_u32(gensum);
      put_str(" checked ");
      put_u32(checked);
      put_str(" bad ");
      put_u32(bad);
      put_str(" sweeps ");
      put_u32(sweeps);
      put_char('\n');
    }
  }
}
