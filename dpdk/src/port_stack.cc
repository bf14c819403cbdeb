#include "port_stack.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <rte_arp.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string_view>
#include <thread>

#include "ramshift/base/log.h"

namespace ramshift::transport::dpdk {
namespace {

// Why these sizes: 1,024 descriptors each way and 8,191 mbufs (a power of two less one, as
// mempools prefer) hold a few windows of frames under --no-huge's small default memory.
constexpr uint16_t kRingDescriptors = 1024;
constexpr unsigned kPoolMbufs = 8191;
// PMDs that copy a frame out of its mbufs inside rte_eth_tx_burst, walking the segment chain,
// and free them there (DPDK 22.11's eth_af_packet_tx and memif's eth_memif_tx): they may be
// handed borrowed memory (sends_by_reference()). Not memif's zero-copy=yes mode, which
// hands the peer its mbufs' own memory and frees them later.
constexpr std::string_view kCopyingPmds[] = {"net_af_packet", "net_memif"};

bool copies_on_transmit(const rte_eth_dev_info& info) {
  if (info.driver_name == nullptr) return false;
  const std::string_view pmd = info.driver_name;
  if (std::find(std::begin(kCopyingPmds), std::end(kCopyingPmds), pmd) == std::end(kCopyingPmds))
    return false;
  const rte_devargs* args = info.device ? rte_dev_devargs(info.device) : nullptr;
  const bool zero_copy =
      args != nullptr && args->args != nullptr &&
      std::string_view(args->args).find("zero-copy=yes") != std::string_view::npos;
  return !zero_copy;
}
constexpr uint16_t kBurst = 32;
constexpr size_t kL2L3L4 = sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);

Status eal_error(const std::string& what) {
  return {ErrorCode::kInvalidArgument,
          fmt::format("dpdk: {}: {} (check --dpdk-eal and --dpdk-port; as root, e.g. "
                      "--dpdk-eal \"--no-huge --no-pci --vdev=net_af_packet0,iface=eth0\")",
                      what, rte_strerror(rte_errno))};
}

// The process's one EAL and its port stacks, torn down at exit in DPDK's order.
struct Environment {
  std::mutex mu;
  bool tried = false;
  Status init_status;
  std::string args;
  std::map<uint16_t, std::unique_ptr<PortStack>> stacks;
  ~Environment() {
    stacks.clear();
    if (tried && init_status.is_ok()) rte_eal_cleanup();
  }
};

Environment& environment() {
  static Environment env;
  return env;
}

Status init_eal(Environment& env, const std::string& args) {
  if (env.tried) {
    if (!env.init_status.is_ok()) return env.init_status;
    if (!args.empty() && args != env.args)
      return {ErrorCode::kInvalidArgument,
              fmt::format("dpdk: EAL already runs with \"{}\" in this process; it cannot be "
                          "initialised again with \"{}\"",
                          env.args, args)};
    return Status::ok();
  }
  env.tried = true;
  env.args = args;
  std::vector<std::string> words{"ramshift"};
  std::istringstream in(args);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  // EAL logs to stdout by default, where `--json -` reports go.
  rte_openlog_stream(stderr);
  if (rte_eal_init(int(argv.size()), argv.data()) < 0)
    env.init_status = eal_error(fmt::format("EAL initialisation with \"{}\" failed", args));
  return env.init_status;
}

// The UDP checksum of a datagram whose first `head` bytes (from its UDP header on) are at
// `udp` and whose rest is `tail`, elsewhere: the pseudo-header's sum, then each part's.
uint16_t udp_checksum(const rte_ipv4_hdr* ip, const void* udp, size_t head,
                      std::span<const std::byte> tail) {
  uint32_t sum = uint32_t(rte_ipv4_phdr_cksum(ip, 0)) + rte_raw_cksum(udp, head);
  auto rest = rte_raw_cksum(tail.data(), tail.size());
  // A part that starts at an odd offset adds its 16-bit words byte-swapped (RFC 1071).
  if (head % 2 != 0) rest = uint16_t((rest << 8) | (rest >> 8));
  sum += rest;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  const auto folded = uint16_t(~sum);
  return folded == 0 ? 0xffff : folded;  // 0 means "no checksum" in UDP over IPv4
}

}  // namespace

// The free callback of borrowed bytes: nothing to free, the memory is the caller's. The
// shared info's count is the number of mbufs still referring to borrowed memory, plus one
// the port holds so it never reaches zero.
void borrowed_released(void*, void*) {}

struct PortStack::Port {
  uint16_t id = 0;
  rte_mempool* pool = nullptr;
  rte_mempool* ext_pool = nullptr;
  rte_mbuf_ext_shared_info borrowed{};
  bool started = false;
  ~Port() {
    if (started) {
      if (int rc = rte_eth_dev_stop(id); rc != 0) log::warn("dpdk: stopping port {}: {}", id, rc);
      rte_eth_dev_close(id);
    }
    if (uint16_t refs = rte_mbuf_ext_refcnt_read(&borrowed); refs > 1)
      log::warn("dpdk: port {} closes with {} frames still referring to borrowed memory", id,
                refs - 1);
    if (ext_pool) rte_mempool_free(ext_pool);
    if (pool) rte_mempool_free(pool);
  }
};

Result<PortStack*> PortStack::open(const DpdkSettings& s) {
  Environment& env = environment();
  std::lock_guard lock(env.mu);
  RS_RETURN_IF_ERROR(init_eal(env, s.eal_args));
  if (auto it = env.stacks.find(s.port); it != env.stacks.end()) return it->second.get();
  if (!rte_eth_dev_is_valid_port(s.port))
    return Status{ErrorCode::kNotFound,
                  fmt::format("dpdk: no port {} ({} available); name one with --dpdk-eal "
                              "(a vdev or a PCI device bound to a DPDK driver)",
                              s.port, rte_eth_dev_count_avail())};
  auto port = std::make_unique<Port>();
  port->id = s.port;
  int socket = rte_eth_dev_socket_id(s.port);
  if (socket < 0) socket = 0;
  port->pool = rte_pktmbuf_pool_create(fmt::format("ramshift_{}", s.port).c_str(), kPoolMbufs, 256,
                                       0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (!port->pool) return eal_error("cannot create the mbuf pool");
  port->ext_pool = rte_pktmbuf_pool_create(fmt::format("ramshift_ext_{}", s.port).c_str(),
                                           kPoolMbufs, 256, 0, 0, socket);
  if (!port->ext_pool) return eal_error("cannot create the external-buffer mbuf pool");
  port->borrowed.free_cb = borrowed_released;
  rte_mbuf_ext_refcnt_set(&port->borrowed, 1);
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(s.port, 1, 1, &conf) != 0)
    return eal_error(fmt::format("cannot configure port {}", s.port));
  uint16_t rxd = kRingDescriptors, txd = kRingDescriptors;
  if (rte_eth_dev_adjust_nb_rx_tx_desc(s.port, &rxd, &txd) != 0 ||
      rte_eth_rx_queue_setup(s.port, 0, rxd, unsigned(socket), nullptr, port->pool) != 0 ||
      rte_eth_tx_queue_setup(s.port, 0, txd, unsigned(socket), nullptr) != 0)
    return eal_error(fmt::format("cannot set up the queues of port {}", s.port));
  if (rte_eth_dev_start(s.port) != 0) return eal_error(fmt::format("cannot start port {}", s.port));
  port->started = true;
  rte_eth_promiscuous_enable(s.port);  // some vdevs filter on a MAC we never set
  uint16_t mtu = 1500;
  if (rte_eth_dev_get_mtu(s.port, &mtu) != 0 || mtu < 576) mtu = 1500;
  rte_ether_addr addr{};
  rte_eth_macaddr_get(s.port, &addr);
  Mac mac{};
  std::memcpy(mac.data(), addr.addr_bytes, 6);
  rte_eth_dev_info info{};
  const bool by_reference = rte_eth_dev_info_get(s.port, &info) == 0 && copies_on_transmit(info);
  auto stack = std::unique_ptr<PortStack>(new PortStack(std::move(port), mtu, mac));
  stack->by_reference_ = by_reference;
  RS_ASSIGN_OR_RETURN(stack->faults_, fault_plan_from(std::getenv("RAMSHIFT_DPDK_TEST_FAULTS")));
  if (stack->faults_.any())
    log::warn(
        "dpdk: RAMSHIFT_DPDK_TEST_FAULTS injects loss {}, reorder {}, duplicate {} "
        "(a test knob)",
        stack->faults_.loss, stack->faults_.reorder, stack->faults_.duplicate);
  stack->fault_rng_ = stack->faults_.seed * 0x9E3779B97F4A7C15ull + 1;
  PortStack* raw = stack.get();
  raw->thread_ = std::thread([raw] { raw->run(); });
  env.stacks.emplace(s.port, std::move(stack));
  return raw;
}

PortStack::PortStack(std::unique_ptr<Port> port, uint16_t mtu, Mac mac)
    : port_(std::move(port)),
      port_id_(port_->id),
      pool_(port_->pool),
      ext_pool_(port_->ext_pool),
      mtu_(mtu),
      mac_(mac) {}

PortStack::~PortStack() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (void* m : tx_) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  conns_.clear();
}

uint32_t PortStack::raw_payload_limit() const {
  size_t room = rte_pktmbuf_data_room_size(pool_) - RTE_PKTMBUF_HEADROOM - sizeof(rte_ether_hdr);
  return uint32_t(std::min<size_t>(mtu_, room) - sizeof(rte_ipv4_hdr) - sizeof(rte_udp_hdr) -
                  kHeaderBytes);
}

void PortStack::add_local_ip(uint32_t ip) {
  std::lock_guard lock(mu_);
  if (std::find(local_ips_.begin(), local_ips_.end(), ip) == local_ips_.end())
    local_ips_.push_back(ip);
}

Status PortStack::bind(uint32_t ip, uint16_t port, std::shared_ptr<PendingAccepts> accepts,
                       ConnectionConfig config) {
  std::lock_guard lock(mu_);
  if (!bindings_.emplace(std::pair{ip, port}, Binding{std::move(accepts), config}).second)
    return {ErrorCode::kAddressInUse,
            fmt::format("dpdk: {}:{} is already listened on", ipv4_text(ip), port)};
  if (std::find(local_ips_.begin(), local_ips_.end(), ip) == local_ips_.end())
    local_ips_.push_back(ip);
  return Status::ok();
}

void PortStack::unbind(uint32_t ip, uint16_t port) {
  std::lock_guard lock(mu_);
  bindings_.erase({ip, port});
}

Result<Mac> PortStack::resolve(uint32_t local_ip, uint32_t peer_ip, Millis timeout) {
  std::unique_lock lock(mu_);
  arp_wanted_[peer_ip] = local_ip;
  bool found = arp_cv_.wait_for(lock, timeout, [&] { return arp_.contains(peer_ip); });
  arp_wanted_.erase(peer_ip);
  if (!found)
    return Status{ErrorCode::kUnreachable,
                  fmt::format("dpdk: no ARP answer for {} within {} ms (is the peer listening "
                              "on that address? or give --dpdk-peer-mac)",
                              ipv4_text(peer_ip), timeout.count())};
  return arp_[peer_ip];
}

std::shared_ptr<Registered> PortStack::add(Path path, ConnectionConfig config) {
  auto r = std::make_shared<Registered>(*this, path, config);
  std::lock_guard lock(mu_);
  conns_[config.conn_id] = r;
  return r;
}

void PortStack::forget(uint32_t conn_id) {
  std::lock_guard lock(mu_);
  conns_.erase(conn_id);
}

void Registered::send(uint16_t queue, std::span<const std::span<const std::byte>> pieces,
                      std::span<const std::byte> borrowed) {
  stack.transmit(path, queue, pieces, borrowed);
}

bool Registered::sends_by_reference() const { return stack.sends_by_reference(); }

void PortStack::transmit(const Path& path, uint16_t queue,
                         std::span<const std::span<const std::byte>> pieces,
                         std::span<const std::byte> borrowed) {
  size_t copied = 0;
  for (auto p : pieces) copied += p.size();
  const bool attach = by_reference_ && !borrowed.empty();
  if (!attach) copied += borrowed.size();
  const size_t payload = copied + (attach ? borrowed.size() : 0);
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) {
    ++dropped_;  // the pool is empty: the frame's timer resends it
    return;
  }
  char* out = rte_pktmbuf_append(m, uint16_t(kL2L3L4 + copied));
  if (out == nullptr) {
    rte_pktmbuf_free(m);
    ++dropped_;
    return;
  }
  std::byte* body = write_headers(reinterpret_cast<std::byte*>(out), path, queue, payload);
  for (auto p : pieces) {
    std::memcpy(body, p.data(), p.size());
    body += p.size();
  }
  if (!attach) {
    std::memcpy(body, borrowed.data(), borrowed.size());
  } else {
    // The borrowed bytes follow in a second segment that refers to them: not copied here.
    rte_mbuf* ext = rte_pktmbuf_alloc(ext_pool_);
    if (ext == nullptr) {
      rte_pktmbuf_free(m);
      ++dropped_;
      return;
    }
    rte_mbuf_ext_refcnt_update(&port_->borrowed, 1);
    auto* bytes = const_cast<std::byte*>(borrowed.data());  // the PMD only reads it
    // The IOVA is never used: only copying PMDs are handed borrowed bytes (kCopyingPmds).
    rte_pktmbuf_attach_extbuf(ext, bytes, rte_iova_t(reinterpret_cast<uintptr_t>(bytes)),
                              uint16_t(borrowed.size()), &port_->borrowed);
    ext->data_len = uint16_t(borrowed.size());
    ext->pkt_len = borrowed.size();
    if (rte_pktmbuf_chain(m, ext) != 0) {  // never at two segments; freed as one anyway
      rte_pktmbuf_free(m);
      rte_pktmbuf_free(ext);
      ++dropped_;
      return;
    }
  }
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, sizeof(rte_ether_hdr));
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  // Software checksum: af_packet and veth offer no offload, and it is what lets the receiver
  // drop a corrupted frame rather than deliver it. Borrowed bytes are read once here, the only
  // pass over them on this side besides the PMD's own copy.
  udp->dgram_cksum = attach ? udp_checksum(ip, udp, sizeof(*udp) + copied, borrowed)
                            : rte_ipv4_udptcp_cksum(ip, udp);
  tx_.push_back(m);
  if (tx_.size() >= kBurst) flush_tx();
}

std::byte* PortStack::write_headers(std::byte* out, const Path& path, uint16_t queue,
                                    size_t payload) const {
  auto* eth = reinterpret_cast<rte_ether_hdr*>(out);
  std::memcpy(eth->dst_addr.addr_bytes, path.peer_mac.data(), 6);
  std::memcpy(eth->src_addr.addr_bytes, mac_.data(), 6);
  eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  std::memset(ip, 0, sizeof(*ip));
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = htons(uint16_t(sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + payload));
  ip->fragment_offset = htons(RTE_IPV4_HDR_DF_FLAG);
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = htonl(path.local_ip);
  ip->dst_addr = htonl(path.peer_ip);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->src_port = htons(uint16_t(path.local_port + (path.local_per_queue ? queue : 0)));
  udp->dst_port = htons(uint16_t(path.peer_port + (path.peer_per_queue ? queue : 0)));
  udp->dgram_len = htons(uint16_t(sizeof(rte_udp_hdr) + payload));
  udp->dgram_cksum = 0;
  return reinterpret_cast<std::byte*>(udp + 1);
}

void PortStack::flush_tx() {
  auto** pkts = reinterpret_cast<rte_mbuf**>(tx_.data());
  size_t sent = 0;
  // A few tries while the ring drains; what still does not fit is dropped and resent later.
  for (int tries = 0; sent < tx_.size() && tries < 8; ++tries)
    sent += rte_eth_tx_burst(port_id_, 0, pkts + sent, uint16_t(tx_.size() - sent));
  for (size_t i = sent; i < tx_.size(); ++i) {
    rte_pktmbuf_free(pkts[i]);
    ++dropped_;
  }
  tx_.clear();
}

}  // namespace ramshift::transport::dpdk
