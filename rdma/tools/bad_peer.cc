// rdma_bad_peer: a peer that speaks rdma:// badly, for the fault matrix in the soft-RoCE VM
// (tests/softroce/fault_cases.sh); the tcp twin is tests/netns/bad_peer.py. Not part of
// ramshift: it builds what a broken or hostile peer would send, by hand, with raw verbs.
//
//   rdma_bad_peer HOST PORT CASE
//
// Connect requests (refused at the CM): cm-junk (20 random bytes of private data), cm-short
// (6 bytes), cm-version (a queue protocol this build does not speak), cm-queue (queue 5 of 2).
// A connection that goes no further: half-connection (queue 0 of 2, then gone),
// half-silent (queue 0 of 2, then silence: it stays connected for 60 s or until killed,
// printing "holding" once queue 0 is up), queues-then-close (both queues, closed before any
// hello).
// Queue hellos: hello-junk (32 random bytes), hello-short (8 bytes).
// Ring writes after a good hello (docs/protocol.md, *rdma queues*): imm-reserved (reserved
// immediate bits set), imm-too-long (a fragment longer than a slot), credit-bogus (credits
// for slots never written), message-cut (a first fragment, then gone); then whole messages
// that are bad frames: junk, short-header, short-body, bad-crc, huge-length, bad-hello.
// A key from an earlier connection (docs/security.md, *Remote memory*): capture-rkey prints
// the receive ring (address and rkey) queue 0 of the peer announced, "captured ADDR RKEY";
// stale-rkey:ADDR:RKEY connects again (to a new receiver, say), takes its hellos, and RDMA
// WRITEs 4 KiB with the old address and key: exit 0 when the peer refused it, 1 when it
// landed.
// The same for the destination's guest memory, which only the migration protocol hands out:
// capture-memory-key plays a source of a 16 MiB guest (control queue and one data queue,
// plaintext, taking a key per queue) far enough to receive the destination's first
// MEMORY_KEYS range and prints the data queue's key, "captured-memory ADDR RKEY LENGTH";
// stale-memory-key:ADDR:RKEY does so again, RDMA WRITEs 4 KiB on its data queue into the
// guest memory it was just given (control: must land), then 4 KiB with the old address and
// key: exit 0 when the control landed and the old key was refused, 1 when the old key
// worked, 3 when the control write failed. other-queue-key does the control write, then
// writes with the data queue's key through queue 0: "through queue 0: STATUS" (refused
// where the destination binds memory windows, which work only through their own queue
// pair); other-queue-key-old does the same as a source from before keys per queue, which
// the destination gives its region's keys (they land). Both exit 0 unless the control fails (3).
// ring-key-other-queue: after the hellos, writes 64 bytes without an immediate (the peer
// is told of nothing) into the last slot of queue 1's ring with its key through queue 1
// (control: must land), then through queue 0: "through queue 0: STATUS", exit 0 when
// refused (a ring key is a window bound on its own queue pair), 1 when it landed (region
// keys), 3 when the control failed.
// Formats: rdma/src/rdma_cm.cc (private data), ring_protocol.h (hello, immediates),
// transport/wire (frames).
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/wire/frame.h"

namespace {

using ramshift::load_le;
using ramshift::store_le;

constexpr uint32_t kCmMagic = 0x4d435352;     // "RSCM"
constexpr uint32_t kHelloMagic = 0x51525352;  // "RSRQ"
constexpr uint32_t kFrameMagic = 0x46485352;  // "RSHF"
constexpr uint8_t kFrameHello = 1;

std::mt19937_64 rng{std::random_device{}()};

void random_bytes(std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>(rng());
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "rdma_bad_peer: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

// One queue: a cm_id with a QP (librdmacm's default PD and CQs) and a 64 KiB buffer.
struct Queue {
  rdma_event_channel* ch = nullptr;
  rdma_cm_id* id = nullptr;
  std::vector<std::byte> buf = std::vector<std::byte>(65536);
  ibv_mr* mr = nullptr;
};

// The next CM event; a listener that never answers is a finding, so give up after 10 s.
rdma_cm_event_type wait_event(rdma_event_channel* ch) {
  pollfd pfd{ch->fd, POLLIN, 0};
  if (::poll(&pfd, 1, 10000) != 1) {
    errno = ETIMEDOUT;
    die("no rdma_cm event within 10 s");
  }
  rdma_cm_event* ev = nullptr;
  if (rdma_get_cm_event(ch, &ev) != 0) die("rdma_get_cm_event");
  rdma_cm_event_type t = ev->event;
  rdma_ack_cm_event(ev);
  return t;
}

// Resolves and connects one queue with `priv` as private data; false if refused.
bool connect_queue(Queue& q, const char* host, const char* port,
                   const std::vector<std::byte>& priv) {
  q.ch = rdma_create_event_channel();
  if (!q.ch || rdma_create_id(q.ch, &q.id, nullptr, RDMA_PS_TCP) != 0) die("rdma_create_id");
  addrinfo* ai = nullptr;
  if (getaddrinfo(host, port, nullptr, &ai) != 0) die("getaddrinfo");
  if (rdma_resolve_addr(q.id, nullptr, ai->ai_addr, 2000) != 0) die("rdma_resolve_addr");
  freeaddrinfo(ai);
  std::printf("resolving %s:%s\n", host, port);
  if (wait_event(q.ch) != RDMA_CM_EVENT_ADDR_RESOLVED) die("address not resolved");
  if (rdma_resolve_route(q.id, 2000) != 0 || wait_event(q.ch) != RDMA_CM_EVENT_ROUTE_RESOLVED)
    die("route not resolved");
  ibv_qp_init_attr qa{};
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = qa.cap.max_recv_wr = 16;
  qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
  if (rdma_create_qp(q.id, nullptr, &qa) != 0) die("rdma_create_qp");
  // Remote write: the peer may answer with a message (an ERROR frame) into our ring.
  q.mr = ibv_reg_mr(q.id->pd, q.buf.data(), q.buf.size(),
                    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  if (!q.mr) die("ibv_reg_mr");
  // Receives for the peer's hello and a few messages or credits, so it is never refused for
  // lack of them (the source cases repost each one they take).
  for (int i = 0; i < 8; ++i)
    if (rdma_post_recv(q.id, nullptr, q.buf.data() + 512 * i, 64, q.mr) != 0) die("rdma_post_recv");
  rdma_conn_param p{};
  p.private_data = priv.data();
  p.private_data_len = static_cast<uint8_t>(priv.size());
  p.retry_count = 7;
  p.rnr_retry_count = 6;
  if (rdma_connect(q.id, &p) != 0) die("rdma_connect");
  rdma_cm_event_type t = wait_event(q.ch);
  std::printf("queue: %s\n", rdma_event_str(t));
  return t == RDMA_CM_EVENT_ESTABLISHED;
}

// `caps`: the capability bits (rdma/src/cm_private_data.h); 2 = keys per queue.
std::vector<std::byte> private_data(uint64_t token, uint16_t queue, uint16_t count,
                                    uint16_t version = 1, uint16_t caps = 0) {
  std::vector<std::byte> p(20);
  store_le<uint32_t>(p.data(), kCmMagic);
  store_le<uint16_t>(p.data() + 4, version);
  store_le<uint16_t>(p.data() + 6, caps);
  store_le<uint64_t>(p.data() + 8, token);
  store_le<uint16_t>(p.data() + 16, queue);
  store_le<uint16_t>(p.data() + 18, count);
  return p;
}

void send_bytes(Queue& q, const std::byte* data, size_t n) {
  std::byte* out = q.buf.data() + 8192;
  std::memcpy(out, data, n);
  if (rdma_post_send(q.id, nullptr, out, n, q.mr, IBV_SEND_SIGNALED) != 0) die("rdma_post_send");
  ibv_wc wc{};
  if (rdma_get_send_comp(q.id, &wc) <= 0) die("send completion");
}

struct PeerRing {
  uint64_t address = 0;
  uint32_t rkey = 0, slots = 0, slot_bytes = 0;
};

// Our hello (a ring of 8 x 4 KiB in our buffer) and the peer's.
PeerRing exchange_hello(Queue& q, uint32_t index) {
  std::byte h[32]{};
  store_le<uint32_t>(h, kHelloMagic);
  store_le<uint16_t>(h + 4, 1);
  store_le<uint64_t>(h + 8, reinterpret_cast<uint64_t>(q.buf.data() + 16384));
  store_le<uint32_t>(h + 16, q.mr->rkey);
  store_le<uint32_t>(h + 20, 8);
  store_le<uint32_t>(h + 24, 4096);
  store_le<uint32_t>(h + 28, index);
  send_bytes(q, h, sizeof h);
  ibv_wc wc{};
  if (rdma_get_recv_comp(q.id, &wc) <= 0 || wc.status != IBV_WC_SUCCESS) die("peer's hello");
  const std::byte* p = q.buf.data();  // the first receive
  PeerRing r{load_le<uint64_t>(p + 8), load_le<uint32_t>(p + 16), load_le<uint32_t>(p + 20),
             load_le<uint32_t>(p + 24)};
  std::printf("peer ring: %u slots of %u bytes\n", r.slots, r.slot_bytes);
  return r;
}

// One RDMA WRITE WITH IMMEDIATE of `n` bytes into the peer's slot 0 (a plain RDMA WRITE when
// `with_imm` is false). Returns the completion's status.
ibv_wc_status ring_write(Queue& q, const PeerRing& r, const std::byte* data, size_t n, uint32_t imm,
                         bool with_imm = true) {
  std::byte* out = q.buf.data() + 8192;
  std::memcpy(out, data, n);
  ibv_sge sge{reinterpret_cast<uint64_t>(out), static_cast<uint32_t>(n), q.mr->lkey};
  ibv_send_wr wr{};
  wr.sg_list = &sge;
  wr.num_sge = n > 0 ? 1 : 0;
  wr.opcode = with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.imm_data = htonl(imm);
  wr.wr.rdma.remote_addr = r.address;
  wr.wr.rdma.rkey = r.rkey;
  ibv_send_wr* bad = nullptr;
  if (ibv_post_send(q.id->qp, &wr, &bad) != 0) die("ibv_post_send");
  ibv_wc wc{};
  if (rdma_get_send_comp(q.id, &wc) <= 0) die("write completion");
  std::printf("write: %s\n", ibv_wc_status_str(wc.status));
  return wc.status;
}

std::vector<std::byte> frame(uint8_t type, uint32_t length, uint32_t crc,
                             const std::vector<std::byte>& body) {
  std::vector<std::byte> f(16 + body.size());
  if (!body.empty()) std::memcpy(f.data() + 16, body.data(), body.size());
  store_le<uint32_t>(f.data(), kFrameMagic);
  f[4] = static_cast<std::byte>(type);
  store_le<uint32_t>(f.data() + 8, length);
  store_le<uint32_t>(f.data() + 12, crc);
  return f;
}

// Playing a source (the *-memory-key cases): whole messages both ways, one slot each.
// `sent` and `received` count the messages on queue 0, which pick the slots (docs/protocol.md,
// *rdma queues*: slots are used in order).
struct Control {
  Queue* q = nullptr;
  PeerRing ring;
  uint32_t queue_keys = 0;  // 2 when the connect requests asked for keys per queue
  uint64_t sent = 0, received = 0;
};

void send_frame(Control& c, ramshift::wire::FrameType type, const std::vector<std::byte>& body) {
  auto head = ramshift::wire::frame_header(type, body);
  std::vector<std::byte> msg(head.begin(), head.end());
  msg.insert(msg.end(), body.begin(), body.end());
  PeerRing slot = c.ring;
  slot.address += (c.sent++ % c.ring.slots) * c.ring.slot_bytes;
  const auto imm = (1u << 30) | static_cast<uint32_t>(msg.size());
  if (ring_write(*c.q, slot, msg.data(), msg.size(), imm) != IBV_WC_SUCCESS) die("sending a frame");
}

// The next frame the peer wrote into our ring (8 slots of 4 KiB at buf + 16384); credits
// are skipped. Dies on a message longer than a slot: nothing this case waits for is.
std::vector<std::byte> receive_frame(Control& c, ramshift::wire::FrameType* type) {
  for (;;) {
    ibv_wc wc{};
    if (rdma_get_recv_comp(c.q->id, &wc) <= 0 || wc.status != IBV_WC_SUCCESS) die("a message");
    if (rdma_post_recv(c.q->id, nullptr, c.q->buf.data(), 64, c.q->mr) != 0) die("rdma_post_recv");
    const uint32_t imm = ntohl(wc.imm_data);
    if (imm & (1u << 31)) continue;  // a credit
    if (!(imm & (1u << 30))) die("a message longer than a slot");
    const std::byte* p = c.q->buf.data() + 16384 + (c.received++ % 8) * 4096;
    std::vector<std::byte> msg(p, p + (imm & 0xffffff));
    auto f = ramshift::wire::parse_frame(msg);
    if (!f) {
      std::fprintf(stderr, "rdma_bad_peer: %s\n", f.status().message().c_str());
      std::exit(1);
    }
    *type = f->type;
    std::printf("received %s\n", ramshift::wire::frame_type_name(f->type));
    return {f->body.begin(), f->body.end()};
  }
}

// HELLO and REGION_TABLE of a 16 MiB guest, then frames until the first MEMORY_KEYS: its
// first range (where that part of the destination's guest memory is, and its key).
ramshift::wire::KeyRange first_memory_key(Control& c) {
  namespace wire = ramshift::wire;
  wire::Hello hello;
  hello.data_queues = 1;
  hello.session_id = rng();
  hello.software = "rdma_bad_peer";
  send_frame(c, wire::FrameType::kHello, wire::encode(hello));
  wire::RegionTable table;
  table.regions.push_back({0, 16u << 20, "ram"});
  send_frame(c, wire::FrameType::kRegionTable, wire::encode(table));
  for (;;) {
    wire::FrameType type;
    std::vector<std::byte> body = receive_frame(c, &type);
    if (type == wire::FrameType::kError) die("the destination sent ERROR");
    if (type != wire::FrameType::kMemoryKeys) continue;
    auto keys = wire::decode_memory_keys(body, table, hello.page_size, c.queue_keys);
    if (!keys) die("memory_keys: " + keys.status().message());
    wire::KeyRange k = keys->ranges.front();
    if (!k.queue_rkeys.empty()) {
      std::printf("keys per queue: %u %u\n", k.queue_rkeys[0], k.queue_rkeys[1]);
      k.rkey = k.queue_rkeys[1];  // the data queue's: what a source's page writes carry
    }
    return k;
  }
}

void close_queues(std::vector<Queue>& qs) {
  for (auto& q : qs) rdma_disconnect(q.id);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the DREQs leave
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: rdma_bad_peer HOST PORT CASE\n");
    return 2;
  }
  const char* host = argv[1];
  const char* port = argv[2];
  const std::string c = argv[3];
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // every step shows, even if the run is cut
  const uint64_t token = rng();
  std::vector<Queue> qs(2);

  if (c.rfind("cm-", 0) == 0) {
    std::vector<std::byte> priv = private_data(token, 0, 2);
    if (c == "cm-junk") random_bytes(priv.data(), priv.size());
    if (c == "cm-short") priv.resize(6);
    if (c == "cm-version") priv = private_data(token, 0, 2, 77);
    if (c == "cm-queue") priv = private_data(token, 5, 2);
    const bool ok = connect_queue(qs[0], host, port, priv);
    if (ok) close_queues(qs);
    return ok ? 1 : 0;  // refused is what a sound listener does
  }
  if (c == "half-connection") {
    connect_queue(qs[0], host, port, private_data(token, 0, 2));
    return 0;  // exiting tears the queue down
  }
  if (c == "half-silent") {
    if (!connect_queue(qs[0], host, port, private_data(token, 0, 2))) return 1;
    std::printf("holding\n");
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return 0;
  }
  // The guest-memory cases take keys per queue as ramshift's own connects do, except the
  // one that plays an older source.
  const bool memory_case =
      c.find("memory-key") != std::string::npos || c.rfind("other-queue-key", 0) == 0;
  const uint16_t caps = memory_case && c != "other-queue-key-old" ? 2 : 0;
  for (uint16_t i = 0; i < 2; ++i)
    if (!connect_queue(qs[i], host, port, private_data(token, i, 2, 1, caps))) return 1;
  if (c == "queues-then-close") {
    close_queues(qs);
    return 0;
  }
  if (c == "hello-junk" || c == "hello-short") {
    std::byte h[32];
    random_bytes(h, sizeof h);
    for (auto& q : qs) send_bytes(q, h, c == "hello-short" ? 8 : 32);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    close_queues(qs);
    return 0;
  }
  PeerRing rings[2];
  for (uint32_t i = 0; i < 2; ++i) rings[i] = exchange_hello(qs[i], i);
  Queue& q0 = qs[0];
  const PeerRing& r0 = rings[0];
  if (c == "capture-rkey") {
    std::printf("captured %llu %u\n", static_cast<unsigned long long>(r0.address), r0.rkey);
    close_queues(qs);
    return 0;
  }
  if (c == "ring-key-other-queue") {
    const PeerRing& r1 = rings[1];
    const PeerRing last_slot{r1.address + uint64_t{r1.slots - 1} * r1.slot_bytes, r1.rkey, 0, 0};
    std::vector<std::byte> junk(64, std::byte{0xaa});
    std::printf("control, queue 1's ring key through queue 1: ");
    if (ring_write(qs[1], last_slot, junk.data(), junk.size(), 0, false) != IBV_WC_SUCCESS) {
      close_queues(qs);
      return 3;
    }
    std::printf("through queue 0: ");
    const ibv_wc_status st = ring_write(q0, last_slot, junk.data(), junk.size(), 0, false);
    close_queues(qs);
    return st == IBV_WC_SUCCESS ? 1 : 0;
  }
  if (c.rfind("stale-rkey:", 0) == 0) {
    unsigned long long address = 0;
    unsigned rkey = 0;
    if (std::sscanf(c.c_str(), "stale-rkey:%llu:%u", &address, &rkey) != 2) return 2;
    std::printf("this connection's ring: rkey %u; the captured one: rkey %u\n", r0.rkey, rkey);
    std::vector<std::byte> junk(4096, std::byte{0xaa});
    const ibv_wc_status st =
        ring_write(q0, PeerRing{address, rkey, 0, 0}, junk.data(), junk.size(), 0, false);
    close_queues(qs);
    return st == IBV_WC_SUCCESS ? 1 : 0;  // refused is what a sound receiver does
  }
  if (memory_case) {
    Control ctl{&q0, r0, caps ? 2u : 0u};
    const ramshift::wire::KeyRange k = first_memory_key(ctl);
    if (c == "capture-memory-key") {
      std::printf("captured-memory %llu %u %llu\n", static_cast<unsigned long long>(k.address),
                  k.rkey, static_cast<unsigned long long>(k.length));
      close_queues(qs);
      return 0;
    }
    unsigned long long address = 0;
    unsigned rkey = 0;
    const bool stale = c.rfind("stale-memory-key:", 0) == 0;
    if (stale && std::sscanf(c.c_str(), "stale-memory-key:%llu:%u", &address, &rkey) != 2) return 2;
    if (stale)
      std::printf(
          "this migration's guest memory: address %llu rkey %u; the captured: address "
          "%llu rkey %u (%s address)\n",
          static_cast<unsigned long long>(k.address), k.rkey, address, rkey,
          k.address == address ? "the same" : "another");
    // On the data queue, as a source's page writes go: first with the key just given.
    std::vector<std::byte> page(4096, std::byte{0xaa});
    std::printf("control, the key this migration gave: ");
    if (ring_write(qs[1], PeerRing{k.address, k.rkey, 0, 0}, page.data(), page.size(), 0, false) !=
        IBV_WC_SUCCESS) {
      close_queues(qs);
      return 3;
    }
    if (!stale) {
      std::printf("through queue 0: ");
      ring_write(q0, PeerRing{k.address + 4096, k.rkey, 0, 0}, page.data(), page.size(), 0, false);
      close_queues(qs);
      return 0;
    }
    std::printf("the captured key: ");
    const ibv_wc_status st =
        ring_write(qs[1], PeerRing{address, rkey, 0, 0}, page.data(), page.size(), 0, false);
    close_queues(qs);
    return st == IBV_WC_SUCCESS ? 1 : 0;  // refused is what a sound receiver does
  }
  std::vector<std::byte> body(40);
  random_bytes(body.data(), body.size());
  auto crc = [](const std::vector<std::byte>& b) { return ramshift::pipeline::crc32c(b); };
  std::vector<std::byte> msg;
  uint32_t imm = 0;
  if (c == "imm-reserved") {
    imm = 0x01000000u | 16;  // bit 24: reserved
    msg.resize(16);
  } else if (c == "imm-too-long") {
    imm = (1u << 30) | (r0.slot_bytes + 1);
  } else if (c == "credit-bogus") {
    imm = (1u << 31) | 1000;
  } else if (c == "message-cut") {
    msg.resize(1024);
    random_bytes(msg.data(), msg.size());
    imm = static_cast<uint32_t>(msg.size());  // not the last fragment; none follows
  } else {
    if (c == "junk") {
      msg.resize(4096);
      random_bytes(msg.data(), msg.size());
    } else if (c == "short-header") {
      msg = frame(kFrameHello, 40, crc(body), body);
      msg.resize(8);
    } else if (c == "short-body") {
      msg = frame(kFrameHello, 1000, 0, body);
      msg.resize(26);
    } else if (c == "bad-crc") {
      msg = frame(kFrameHello, 40, crc(body) ^ 1, body);
    } else if (c == "huge-length") {
      msg = frame(kFrameHello, 0xffffffffu, 0, body);
    } else if (c == "bad-hello") {
      msg = frame(kFrameHello, 40, crc(body), body);
    } else {
      std::fprintf(stderr, "rdma_bad_peer: unknown case %s\n", c.c_str());
      return 2;
    }
    imm = (1u << 30) | static_cast<uint32_t>(msg.size());
  }
  ring_write(q0, r0, msg.data(), msg.size(), imm);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  close_queues(qs);
  return 0;
}
