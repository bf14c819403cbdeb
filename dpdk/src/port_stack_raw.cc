// `bench --raw` on a port: the sender blasts one frame, built once and copied into each mbuf
// with its sequence number, in bursts, as fast as tx_burst takes them (what it does not take
// is freed, as testpmd's txonly does without --tx-retry); the receiver counts what rx_burst
// gives it, as testpmd's rxonly, but reads each frame's headers to tell ours from the rest.
// No protocol: no ACK, window, retransmission or pacing. The port's I/O thread is parked
// meanwhile, so the bench thread is the only one polling it.
#include <arpa/inet.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstring>
#include <thread>

#include "frame_format.h"
#include "port_stack.h"

namespace ramshift::transport::dpdk {
namespace {

// Why 32: testpmd's default burst, and the stack's own (port_stack.cc).
constexpr uint16_t kBurst = 32;
constexpr size_t kL2L3L4 = sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);
// Where a frame's sequence number sits: our header's bytes 12..15 (frame_format.h).
constexpr size_t kSeqOffset = kL2L3L4 + 12;
// Why: the end marker may meet a receiver's ring full of data frames; five, 5 ms apart, make
// one arriving likely without holding the sender long.
constexpr int kEndFrames = 5;
constexpr auto kEndSpacing = std::chrono::milliseconds(5);
// As the I/O thread (port_stack_rx.cc): an idle receiver naps 20 us after 256 empty polls,
// so one waiting for its sender does not take a core from it.
constexpr int kSpinsBeforeNap = 256;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

// The I/O thread sees exclusive_ and sleeps instead of taking mu_; holding mu_ as well keeps
// the stack's tables (ARP, local addresses) as they are while the bench answers ARP.
class PortStack::Exclusive {
 public:
  explicit Exclusive(PortStack& s) : s_(s) {
    s_.exclusive_ = true;
    s_.mu_.lock();
  }
  ~Exclusive() {
    s_.mu_.unlock();
    s_.exclusive_ = false;
  }
  Exclusive(const Exclusive&) = delete;
  Exclusive& operator=(const Exclusive&) = delete;

 private:
  PortStack& s_;
};

RawBenchReport PortStack::raw_send(const RawSendPlan& plan, const std::atomic<bool>* stop) {
  RawBenchReport r;
  r.role = RawBenchConfig::Role::kSender;
  r.payload_bytes = plan.payload_bytes;
  const size_t udp_payload = kHeaderBytes + plan.payload_bytes;
  const auto frame_len = uint16_t(kL2L3L4 + udp_payload);
  r.wire_bytes = frame_len;
  // The frame, built once: headers, ours (sequence number 0), then a fixed pattern.
  std::vector<std::byte> frame(frame_len);
  std::byte* body = write_headers(frame.data(), plan.path, 0, udp_payload);
  write_header({FrameType::kRawData, plan.run_id, 0, 0, 0, 0}, {body, kHeaderBytes});
  for (size_t i = 0; i < plan.payload_bytes; ++i)
    body[kHeaderBytes + i] = std::byte(uint8_t(i * 7 + 1));

  Exclusive hold(*this);
  flush_tx();  // what the I/O thread left (an ARP request)
  uint32_t seq = 0;
  rte_mbuf* pkts[kBurst];
  const Clock::time_point start = Clock::now(), end = start + plan.duration;
  Clock::time_point now = start;
  while (now < end && !(stop && stop->load(std::memory_order_relaxed))) {
    // An empty pool: the PMD still holds the mbufs it sent; it frees them as its ring drains.
    if (rte_pktmbuf_alloc_bulk(pool_, pkts, kBurst) != 0) {
      now = Clock::now();
      continue;
    }
    for (rte_mbuf* m : pkts) {
      char* out = rte_pktmbuf_append(m, frame_len);  // fits: raw_payload_limit()
      std::memcpy(out, frame.data(), frame_len);
      uint32_t be = htonl(seq++);
      std::memcpy(out + kSeqOffset, &be, sizeof(be));
    }
    uint16_t n = rte_eth_tx_burst(port_id_, 0, pkts, kBurst);
    r.offered_frames += kBurst;
    r.accepted_frames += n;
    if (n < kBurst) rte_pktmbuf_free_bulk(pkts + n, kBurst - n);
    now = Clock::now();
  }
  r.seconds = seconds_between(start, now);
  r.payload_total = r.accepted_frames * plan.payload_bytes;
  r.wire_total = r.accepted_frames * frame_len;

  // The end marker, carrying the accepted count: not counted as offered or accepted.
  for (int i = 0; i < kEndFrames; ++i) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    char* out = m ? rte_pktmbuf_append(m, uint16_t(kL2L3L4 + kRawEndBytes)) : nullptr;
    if (out != nullptr) {
      std::byte* b = write_headers(reinterpret_cast<std::byte*>(out), plan.path, 0, kRawEndBytes);
      write_raw_end(plan.run_id, seq++, r.accepted_frames, {b, kRawEndBytes});
      bool sent = false;
      for (int tries = 0; !sent && tries < 100; ++tries) {  // the ring may still be full
        sent = rte_eth_tx_burst(port_id_, 0, &m, 1) == 1;
        if (!sent) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      if (!sent) rte_pktmbuf_free(m);
    } else if (m != nullptr) {
      rte_pktmbuf_free(m);
    }
    std::this_thread::sleep_for(kEndSpacing);
  }
  return r;
}

RawBenchReport PortStack::raw_receive(const RawReceivePlan& plan, const std::atomic<bool>* stop) {
  RawBenchReport r;
  r.role = RawBenchConfig::Role::kReceiver;
  const uint32_t local[] = {plan.ip};
  Exclusive hold(*this);
  std::optional<uint32_t> run_id;  // the first frame's; another run's frames are foreign
  bool started = false;
  Clock::time_point first{}, last{}, deadline{};
  int idle = 0;
  rte_mbuf* pkts[kBurst];
  while (!(stop && stop->load(std::memory_order_relaxed))) {
    uint16_t n = rte_eth_rx_burst(port_id_, 0, pkts, kBurst);
    Clock::time_point now = Clock::now();
    if (n == 0) {
      if (started && (now >= deadline || now - last >= plan.grace)) break;
      if (++idle > kSpinsBeforeNap) std::this_thread::sleep_for(std::chrono::microseconds(20));
      continue;
    }
    idle = 0;
    bool counted = false;
    for (uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = pkts[i];
      std::span<const std::byte> bytes{rte_pktmbuf_mtod(m, const std::byte*), m->data_len};
      ReadFrame f = m->nb_segs == 1 ? read_frame(bytes, local, false) : ReadFrame{};
      if (f.kind == ReadFrame::Kind::kArp) {
        handle_arp(bytes.data(), bytes.size());
        continue;
      }
      std::optional<RawFrame> raw;
      if (f.kind == ReadFrame::Kind::kUdp && f.dst_port == plan.port)
        raw = parse_raw_frame(f.payload);
      if (!raw || (run_id && raw->run_id != *run_id)) {
        ++r.foreign_frames;
      } else if (raw->end) {
        r.end_marker = true;
        r.sender_accepted_frames = raw->accepted;
      } else {
        run_id = raw->run_id;
        ++r.received_frames;
        r.payload_bytes = uint32_t(f.payload.size() - kHeaderBytes);
        r.payload_total += r.payload_bytes;
        r.wire_total += bytes.size();
        r.wire_bytes = uint32_t(bytes.size());
        counted = true;
      }
    }
    rte_pktmbuf_free_bulk(pkts, n);
    if (!tx_.empty()) flush_tx();  // ARP replies
    if (counted && !started) {
      started = true;
      first = now;
      deadline = now + plan.duration + plan.grace;
    }
    if (counted) last = now;
    if (r.end_marker || (started && now >= deadline)) break;
  }
  r.seconds = started ? seconds_between(first, last) : 0;
  return r;
}

}  // namespace ramshift::transport::dpdk
