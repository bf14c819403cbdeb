// dpdk:// listen and connect over a PortStack, and the backend's registry entry (linked
// whole, see CMakeLists.txt: nothing else refers to this file's registrar).
#include <fmt/format.h>

#include <cstdlib>
#include <random>

#include "backend_entry.h"
#include "host_checks.h"
#include "port_stack.h"
#include "ramshift/base/log.h"

namespace ramshift::transport::dpdk {
namespace {

// Why: the UDP ports a client's queues use, base + queue, from this range; above the
// well-known and registered ports, below Linux's ephemeral range.
constexpr uint32_t kClientPortLow = 20000, kClientPortSpan = 12000;

ConnectionConfig config_for(const PortStack& stack, const TransportOptions& options) {
  ConnectionConfig c;
  // The MTU less the IPv4 (20), UDP (8) and our own headers.
  c.send.max_payload = size_t(stack.mtu()) - 28 - kHeaderBytes;
  c.peer_timeout = std::max(options.connect_timeout, Millis(1000));
  // For A/B measurements only (bench/dpdk_memif_raw.sh): no one-sided writes, so raw pages
  // go inside the batches, copied, as before zero copy.
  const char* no_writes = std::getenv("RAMSHIFT_DPDK_TEST_NO_WRITES");  // set and not empty
  c.one_sided_writes = no_writes == nullptr || *no_writes == '\0';
  if (!c.one_sided_writes)
    log::warn(
        "dpdk: RAMSHIFT_DPDK_TEST_NO_WRITES: no one-sided writes, raw pages copied (a "
        "measuring knob)");
  return c;
}

// The application's handle: closes, lingers until the peer acknowledged the close (or the
// connection failed, or the peer timeout), then leaves the stack.
class DpdkConnection : public Connection {
 public:
  DpdkConnection(PortStack& stack, std::shared_ptr<Registered> r)
      : stack_(stack), r_(r), port_dropped_at_start_(stack.dropped_frames()) {}
  ~DpdkConnection() override {
    r_->conn.close();
    auto deadline = Clock::now() + std::min(Millis(5000), peer_timeout_);
    while (!r_->conn.finished() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stack_.forget(id_);
  }
  const Capabilities& capabilities() const override { return r_->conn.capabilities(); }
  uint32_t queue_count() const override { return r_->conn.queue_count(); }
  std::string describe() const override { return r_->conn.describe(); }
  std::string transport_name() const override { return "dpdk"; }
  Result<MemoryKey> register_memory(std::span<std::byte> m, MemoryAccess a) override {
    return r_->conn.register_memory(m, a);
  }
  Status release_memory(const MemoryKey& key) override { return r_->conn.release_memory(key); }
  Status post_write(uint32_t q, std::span<const RemoteWrite> w) override {
    return r_->conn.post_write(q, w);
  }
  Status post_send(uint32_t q, std::span<const ConstBuffer> s) override {
    return r_->conn.post_send(q, s);
  }
  Status wait_writable(uint32_t q, Millis t) override { return r_->conn.wait_writable(q, t); }
  Status flush(uint32_t q, Millis t) override { return r_->conn.flush(q, t); }
  Result<size_t> poll(uint32_t q, std::span<ConstBuffer> out, Millis t) override {
    return r_->conn.poll(q, out, t);
  }
  void close() override { r_->conn.close(); }
  // The connection's own counters, plus what the port dropped meanwhile (no mbuf, TX ring
  // full, malformed, the test knob's losses): on a port one migration uses, those are its.
  LinkStats link_stats() const override {
    LinkStats s = r_->conn.link_stats();
    s.dropped_frames =
        s.dropped_frames.value_or(0) + (stack_.dropped_frames() - port_dropped_at_start_);
    return s;
  }

  uint32_t id_ = 0;
  Millis peer_timeout_{10000};

 private:
  PortStack& stack_;
  std::shared_ptr<Registered> r_;
  uint64_t port_dropped_at_start_;
};

class DpdkListener : public Listener {
 public:
  DpdkListener(PortStack& stack, Uri uri, uint32_t ip, Millis peer_timeout)
      : stack_(stack), uri_(std::move(uri)), ip_(ip), peer_timeout_(peer_timeout) {}
  ~DpdkListener() override {
    stack_.unbind(ip_, uri_.port);
    std::lock_guard lock(accepts_->mu);
    for (auto& r : accepts_->ready) stack_.forget(r->conn.conn_id());
  }
  Uri address() const override { return uri_; }
  Result<std::unique_ptr<Connection>> accept(Millis timeout) override {
    std::unique_lock lock(accepts_->mu);
    if (!accepts_->cv.wait_for(lock, timeout, [&] { return !accepts_->ready.empty(); }))
      return Status{ErrorCode::kTimeout, fmt::format("dpdk: no connection to {} within {} ms",
                                                     uri_.to_string(), timeout.count())};
    auto r = std::move(accepts_->ready.front());
    accepts_->ready.pop_front();
    auto c = std::make_unique<DpdkConnection>(stack_, r);
    c->id_ = r->conn.conn_id();
    c->peer_timeout_ = peer_timeout_;
    return std::unique_ptr<Connection>(std::move(c));
  }
  std::shared_ptr<PendingAccepts> accepts_ = std::make_shared<PendingAccepts>();

 private:
  PortStack& stack_;
  Uri uri_;
  uint32_t ip_;
  Millis peer_timeout_;
};

Result<uint32_t> address_of(const Uri& uri) {
  auto ip = parse_ipv4(uri.host);
  if (!ip)
    return Status{ErrorCode::kInvalidArgument,
                  fmt::format("dpdk: {} is not an IPv4 address (dpdk://10.0.0.2:7000)", uri.host)};
  return *ip;
}

// The peer's MAC: --dpdk-peer-mac, or asked by ARP from `local_ip` within `timeout`.
Result<Mac> peer_mac(PortStack& stack, const DpdkSettings& s, uint32_t peer_ip, Millis timeout) {
  if (s.peer_mac) return *s.peer_mac;
  return stack.resolve(*s.local_ip, peer_ip, timeout);
}

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(uint32_t ip, address_of(uri));
  if (uri.port == 0)
    return Status{ErrorCode::kInvalidArgument, "dpdk: listen on a given port, not 0"};
  RS_ASSIGN_OR_RETURN(DpdkSettings s, dpdk_settings_from(options.settings));
  RS_ASSIGN_OR_RETURN(PortStack * stack, PortStack::open(s));
  ConnectionConfig c = config_for(*stack, options);
  auto l = std::make_unique<DpdkListener>(*stack, uri, ip, c.peer_timeout);
  RS_RETURN_IF_ERROR(stack->bind(ip, uri.port, l->accepts_, c));
  return std::unique_ptr<Listener>(std::move(l));
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(uint32_t peer_ip, address_of(uri));
  RS_ASSIGN_OR_RETURN(DpdkSettings s, dpdk_settings_from(options.settings));
  if (!s.local_ip)
    return Status{ErrorCode::kInvalidArgument,
                  "dpdk: connecting needs this side's address: --dpdk-local-ip ADDR"};
  if (queues == 0 || queues > 256 || queues > kClientPortSpan)
    return Status{ErrorCode::kInvalidArgument, fmt::format("dpdk: {} queues (1..256)", queues)};
  RS_ASSIGN_OR_RETURN(PortStack * stack, PortStack::open(s));
  stack->add_local_ip(*s.local_ip);
  auto start = Clock::now();
  RS_ASSIGN_OR_RETURN(Mac mac, peer_mac(*stack, s, peer_ip, options.connect_timeout));
  std::random_device rd;
  ConnectionConfig c = config_for(*stack, options);
  c.conn_id = rd() | 1u;  // never 0
  c.queues = queues;
  c.client = true;
  c.peer = fmt::format("{}:{}", uri.host, uri.port);
  uint16_t base = uint16_t(kClientPortLow + rd() % (kClientPortSpan - queues));
  Path path{*s.local_ip, peer_ip, base, uri.port, true, false, mac};
  auto r = stack->add(path, c);
  auto c_handle = std::make_unique<DpdkConnection>(*stack, r);
  c_handle->id_ = c.conn_id;
  c_handle->peer_timeout_ = c.peer_timeout;
  auto left = options.connect_timeout - std::chrono::duration_cast<Millis>(Clock::now() - start);
  if (Status st = r->conn.wait_established(std::max(left, Millis(0))); !st.is_ok()) {
    r->conn.fail(st);
    return st;
  }
  return std::unique_ptr<Connection>(std::move(c_handle));
}

// `bench --raw` (ramshift/transport/raw_bench.h) on the stack listen and connect use: the
// receiver answers ARP for its address and counts; the sender finds the receiver's MAC as
// connect does, then blasts from one UDP port to the receiver's.
Result<RawBenchReport> raw_bench(const RawBenchConfig& config) {
  RS_ASSIGN_OR_RETURN(uint32_t ip, address_of(config.address));
  if (config.address.port == 0)
    return Status{ErrorCode::kInvalidArgument, "dpdk: bench --raw needs a port, not 0"};
  RS_ASSIGN_OR_RETURN(DpdkSettings s, dpdk_settings_from(config.settings));
  RS_ASSIGN_OR_RETURN(PortStack * stack, PortStack::open(s));
  if (config.role == RawBenchConfig::Role::kReceiver) {
    stack->add_local_ip(ip);
    if (config.on_listening) config.on_listening(config.address);
    return stack->raw_receive({ip, config.address.port, config.duration, config.grace},
                              config.stop);
  }
  if (!s.local_ip)
    return Status{ErrorCode::kInvalidArgument,
                  "dpdk: the raw sender needs this side's address: --dpdk-local-ip ADDR"};
  uint32_t limit = stack->raw_payload_limit();
  uint32_t payload = config.payload_bytes ? config.payload_bytes : limit;
  if (payload > limit)
    return Status{ErrorCode::kInvalidArgument,
                  fmt::format("dpdk: --frame-size {} is over the {} bytes port {} carries after "
                              "the Ethernet, IPv4, UDP and ramshift headers (MTU {})",
                              payload, limit, s.port, stack->mtu())};
  stack->add_local_ip(*s.local_ip);
  RS_ASSIGN_OR_RETURN(Mac mac, peer_mac(*stack, s, ip, config.connect_timeout));
  std::random_device rd;
  auto local_port = uint16_t(kClientPortLow + rd() % kClientPortSpan);
  Path path{*s.local_ip, ip, local_port, config.address.port, false, false, mac};
  return stack->raw_send({path, uint32_t(rd()), payload, config.duration}, config.stop);
}

Backend available_backend() {
  Backend b = describe_backend();
  b.listen = listen;
  b.connect = connect;
  b.raw_bench = raw_bench;
  refuse_security_settings(b);
  b.check_settings = [](const BackendSettings& s) { return dpdk_settings_from(s).status(); };
  b.host_checks = [](const BackendSettings& s) {
    auto d = dpdk_settings_from(s);
    if (!d)
      return std::vector<HostCheck>{
          {"dpdk.settings", HostCheck::Level::kFail, d.status().message(), ""}};
    return host_checks(*d);
  };
  return b;
}

const BackendRegistrar kRegistered(available_backend());

}  // namespace
}  // namespace ramshift::transport::dpdk
