// The port's I/O thread: receive, validate, answer ARP, dispatch, tick, transmit.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <rte_arp.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstring>
#include <random>
#include <thread>

#include "port_stack.h"
#include "ramshift/base/log.h"

namespace ramshift::transport::dpdk {
namespace {

constexpr uint16_t kBurst = 32;
// Why: an idle loop that spins takes a core from the migration's own threads (two cores
// shared on small hosts); after this many empty polls the thread naps 20 us per poll.
constexpr int kSpinsBeforeNap = 256;
constexpr auto kArpRetry = std::chrono::milliseconds(200);

double next_uniform(uint64_t& state) {
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;  // xorshift64
  return double(state >> 11) / double(1ull << 53);
}

}  // namespace

void PortStack::run() {
  int idle = 0;
  Clock::time_point last_arp{};
  while (!stop_) {
    if (exclusive_) {  // a raw bench drives the port (port_stack_raw.cc)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    Clock::time_point now = Clock::now();
    std::lock_guard lock(mu_);
    bool received = receive_burst(now) > 0;
    for (auto it = conns_.begin(); it != conns_.end(); ++it) it->second->conn.tick(now);
    if (!arp_wanted_.empty() && now - last_arp >= kArpRetry) {
      for (auto [peer, local] : arp_wanted_) send_arp(false, local, peer, Mac{});
      last_arp = now;
    }
    bool busy = received || !tx_.empty();
    if (!tx_.empty()) flush_tx();
    idle = busy ? 0 : idle + 1;
    if (idle > kSpinsBeforeNap) {
      mu_.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      mu_.lock();
    }
  }
}

size_t PortStack::receive_burst(Clock::time_point now) {
  rte_mbuf* pkts[kBurst];
  uint16_t n = rte_eth_rx_burst(port_id_, 0, pkts, kBurst);
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (m->nb_segs == 1)
      handle_frame(rte_pktmbuf_mtod(m, const std::byte*), m->data_len, now);
    else
      ++dropped_;  // larger than a segment: never sent by us at our MTU
    rte_pktmbuf_free(m);
  }
  return n;
}

ReadFrame read_frame(std::span<const std::byte> frame, std::span<const uint32_t> local_ips,
                     bool check_udp_sum) {
  using Kind = ReadFrame::Kind;
  const std::byte* data = frame.data();
  size_t len = frame.size();
  ReadFrame f;
  if (len < sizeof(rte_ether_hdr)) return {Kind::kMalformed};
  rte_ether_hdr eth;
  std::memcpy(&eth, data, sizeof(eth));
  uint16_t type = ntohs(eth.ether_type);
  if (type == RTE_ETHER_TYPE_ARP) return {Kind::kArp};
  if (type != RTE_ETHER_TYPE_IPV4) return {Kind::kOther};  // IPv6 neighbour discovery and the like
  if (len < sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr)) return {Kind::kMalformed};
  const std::byte* l3 = data + sizeof(rte_ether_hdr);
  rte_ipv4_hdr ip;
  std::memcpy(&ip, l3, sizeof(ip));
  size_t ihl = size_t(ip.version_ihl & 0xf) * 4;
  size_t total = ntohs(ip.total_length);
  if ((ip.version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) ||
      total > len - sizeof(rte_ether_hdr) || total < ihl + sizeof(rte_udp_hdr))
    return {Kind::kMalformed};
  if (ip.next_proto_id != IPPROTO_UDP) return {Kind::kOther};
  // We never fragment (DF): a fragment is someone else's, or forged.
  if ((ntohs(ip.fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0)
    return {Kind::kMalformed};
  f.dst_ip = ntohl(ip.dst_addr);
  if (std::find(local_ips.begin(), local_ips.end(), f.dst_ip) == local_ips.end())
    return {Kind::kOther};
  if (rte_raw_cksum(l3, ihl) != 0xffff) return {Kind::kMalformed};
  const std::byte* l4 = l3 + ihl;
  rte_udp_hdr udp;
  std::memcpy(&udp, l4, sizeof(udp));
  size_t udp_len = ntohs(udp.dgram_len);
  if (udp_len != total - ihl) return {Kind::kMalformed};
  if (check_udp_sum && udp.dgram_cksum != 0) {
    // Over the pseudo-header and the datagram, its checksum included, a good sum is 0xffff.
    uint32_t sum = uint32_t(rte_raw_cksum(l4, udp_len)) +
                   rte_ipv4_phdr_cksum(reinterpret_cast<const rte_ipv4_hdr*>(l3), 0);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    if (sum != 0xffff) return {Kind::kMalformed};
  }
  f.kind = Kind::kUdp;
  f.src_ip = ntohl(ip.src_addr);
  f.src_port = ntohs(udp.src_port);
  f.dst_port = ntohs(udp.dst_port);
  std::memcpy(f.src_mac.data(), eth.src_addr.addr_bytes, 6);
  f.payload = {l4 + sizeof(rte_udp_hdr), udp_len - sizeof(rte_udp_hdr)};
  return f;
}

void PortStack::handle_frame(const std::byte* data, size_t len, Clock::time_point now) {
  ReadFrame f = read_frame({data, len}, local_ips_, true);
  switch (f.kind) {
    case ReadFrame::Kind::kArp:
      return handle_arp(data, len);
    case ReadFrame::Kind::kOther:
      return;
    case ReadFrame::Kind::kMalformed:
      return void(++dropped_);
    case ReadFrame::Kind::kUdp:
      break;
  }
  // Learn the sender's MAC from a valid frame too, so a peer that was given --dpdk-peer-mac
  // (and never ARPed) still gets answers.
  if (auto known = arp_.find(f.src_ip); known == arp_.end() || known->second != f.src_mac)
    arp_[f.src_ip] = f.src_mac;
  deliver(f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.payload, now);
}

void PortStack::handle_arp(const std::byte* data, size_t len) {
  if (len < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) return void(++dropped_);
  rte_arp_hdr arp;
  std::memcpy(&arp, data + sizeof(rte_ether_hdr), sizeof(arp));
  if (ntohs(arp.arp_hardware) != RTE_ARP_HRD_ETHER || ntohs(arp.arp_protocol) != 0x0800 ||
      arp.arp_hlen != 6 || arp.arp_plen != 4)
    return void(++dropped_);
  uint32_t sender = ntohl(arp.arp_data.arp_sip), target = ntohl(arp.arp_data.arp_tip);
  Mac sender_mac{};
  std::memcpy(sender_mac.data(), arp.arp_data.arp_sha.addr_bytes, 6);
  bool for_us = std::find(local_ips_.begin(), local_ips_.end(), target) != local_ips_.end();
  if (for_us || arp_wanted_.contains(sender)) {
    arp_[sender] = sender_mac;
    arp_cv_.notify_all();
  }
  if (for_us && ntohs(arp.arp_opcode) == RTE_ARP_OP_REQUEST)
    send_arp(true, target, sender, sender_mac);
}

void PortStack::send_arp(bool reply, uint32_t sender_ip, uint32_t target_ip,
                         const Mac& target_mac) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) return;
  char* out = rte_pktmbuf_append(m, sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr));
  if (out == nullptr) return rte_pktmbuf_free(m);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(out);
  Mac broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  std::memcpy(eth->dst_addr.addr_bytes, reply ? target_mac.data() : broadcast.data(), 6);
  std::memcpy(eth->src_addr.addr_bytes, mac_.data(), 6);
  eth->ether_type = htons(RTE_ETHER_TYPE_ARP);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  arp->arp_hardware = htons(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = htons(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = 6;
  arp->arp_plen = 4;
  arp->arp_opcode = htons(reply ? RTE_ARP_OP_REPLY : RTE_ARP_OP_REQUEST);
  std::memcpy(arp->arp_data.arp_sha.addr_bytes, mac_.data(), 6);
  arp->arp_data.arp_sip = htonl(sender_ip);
  std::memcpy(arp->arp_data.arp_tha.addr_bytes, target_mac.data(), 6);
  arp->arp_data.arp_tip = htonl(target_ip);
  tx_.push_back(m);
}

void PortStack::deliver(uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port,
                        std::span<const std::byte> payload, Clock::time_point now) {
  if (!faults_.any()) return dispatch(src_ip, src_port, dst_ip, dst_port, payload, now);
  // The test knob: drop, hold back behind the next frame, or deliver twice.
  if (next_uniform(fault_rng_) < faults_.loss) return void(++dropped_);
  auto release_held = [&] {
    if (!held_) return;
    Held h = std::move(*held_);
    held_.reset();
    dispatch(h.src_ip, h.src_port, h.dst_ip, h.dst_port, h.payload, now);
  };
  if (!held_ && next_uniform(fault_rng_) < faults_.reorder) {
    held_ = Held{src_ip, dst_ip, src_port, dst_port, Bytes(payload.begin(), payload.end())};
    return;
  }
  dispatch(src_ip, src_port, dst_ip, dst_port, payload, now);
  if (next_uniform(fault_rng_) < faults_.duplicate)
    dispatch(src_ip, src_port, dst_ip, dst_port, payload, now);
  release_held();
}

void PortStack::dispatch(uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port,
                         std::span<const std::byte> payload, Clock::time_point now) {
  auto frame = parse_frame(payload);
  if (!frame) return void(++dropped_);
  const FrameHeader& h = frame->header;
  auto it = conns_.find(h.conn_id);
  if (it != conns_.end()) {
    if (it->second->path.peer_ip != src_ip) return void(++dropped_);
    return it->second->conn.on_frame(*frame, now);
  }
  auto b = bindings_.find({dst_ip, dst_port});
  if (h.type != FrameType::kHello || b == bindings_.end() || h.queue == 0) return void(++dropped_);
  auto mac = arp_.find(src_ip);
  if (mac == arp_.end()) return void(++dropped_);  // it ARPed us first; we learnt it then
  ConnectionConfig config = b->second.config;
  config.conn_id = h.conn_id;
  config.queues = h.queue;
  config.client = false;
  config.peer = fmt::format("{}:{}", ipv4_text(src_ip), src_port);
  Path path{dst_ip, src_ip, dst_port, src_port, false, true, mac->second};
  auto r = std::make_shared<Registered>(*this, path, config);
  conns_[h.conn_id] = r;
  r->conn.on_frame(*frame, now);
  auto& accepts = *b->second.accepts;
  std::lock_guard lock(accepts.mu);
  accepts.ready.push_back(std::move(r));
  accepts.cv.notify_all();
}

}  // namespace ramshift::transport::dpdk
