// run_bridge_source / run_bridge_dest: set-up and tear-down around the Relay.
#include "ramshift/qemu/bridge.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <thread>

#include "local_channel.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "relay.h"

namespace ramshift::qemu {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {}  // namespace

std::string BridgeReport::to_json() const {
  auto j = nlohmann::ordered_json::parse(MigrationReport::to_json());
  auto chans = nlohmann::ordered_json::array();
  for (const auto& c : channels) {
    nlohmann::ordered_json o;
    o["id"] = c.id;
    o["kind"] = c.kind;
    o["mode"] = c.mode;
    o["bytes_to_dest"] = c.bytes_to_dest;
    o["bytes_to_source"] = c.bytes_to_source;
    o["packets"] = c.packets;
    if (c.qemu_zero_pages) o["qemu_zero_pages"] = c.qemu_zero_pages;
    if (!c.note.empty()) o["note"] = c.note;
    chans.push_back(o);
  }
  j["channels"] = chans;
  if (qemu_closed_early) j["qemu_closed_early"] = true;
  return j.dump(2);
}

BridgeReport run_bridge_source(const transport::Uri& to, const QemuEndpoint& qemu,
                               const BridgeConfig& config, BridgeProgress* progress,
                               const std::function<void()>& on_ready) {
  BridgeReport r;
  r.role = "bridge-source";
  r.codec = config.multifd_aware ? pipeline::codec_name(config.codec.mode) : "passthrough";
  r.transport = to.scheme;
  r.peer = to.to_string();
  auto t0 = Clock::now();
  // The QEMU side first: a bad path is a usage error before anything connects.
  std::optional<UnixListener> listener;
  if (!qemu.stdio()) {
    auto l = UnixListener::open(qemu.unix_path);
    if (!l) {
      r.error = l.status();
      return r;
    }
    listener.emplace(std::move(l).value());
  }
  auto conn = transport::connect(to, config.queues, config.transport);
  auto retry_until = t0 + std::chrono::milliseconds(config.connect_retry_ms);
  while (!conn && conn.status().code() == ErrorCode::kUnreachable && Clock::now() < retry_until) {
    std::this_thread::sleep_for(100ms);
    conn = transport::connect(to, config.queues, config.transport);
  }
  if (!conn) {
    r.error = conn.status().with_context("connecting to the destination bridge");
    return r;
  }
  r.queues = (*conn)->queue_count();
  r.transport = (*conn)->transport_name();
  Relay relay(**conn, Relay::Side::kSource, config, progress);
  if (Status st = relay.handshake(10s); !st) {
    r.error = st;
    return r;
  }
  relay.start();
  r.setup_ms = ms_since(t0);
  if (progress) progress->setup_ms = r.setup_ms;
  log::info("bridge: connected to {} in {:.0f} ms", (*conn)->describe(), r.setup_ms);
  if (on_ready) on_ready();

  auto accept_deadline = Clock::now() + std::chrono::milliseconds(config.accept_timeout_ms);
  auto give_up = [&] { return config.accept_timeout_ms > 0 && Clock::now() >= accept_deadline; };
  Status st;
  if (qemu.stdio()) {
    auto ch = LocalChannel::from_stdio();
    st = ch ? relay.add_channel(std::move(ch).value()) : ch.status();
  } else {
    // Accept until every channel has closed: QEMU opens its multifd channels after the main.
    while (!relay.finished()) {
      if (migration::cancel_requested(config.cancel)) break;  // wait() below fails the relay
      auto fd = listener->accept(100);
      if (!fd) {
        if (fd.status().code() != ErrorCode::kTimeout) {
          st = fd.status();
          break;
        }
        if (relay.first_open() == Clock::time_point{} && give_up()) break;
        continue;
      }
      auto ch = LocalChannel::from_socket(std::move(fd).value());
      st = ch ? relay.add_channel(std::move(ch).value()) : ch.status();
      if (!st) break;
    }
  }
  if (!st) relay.fail(st, true);
  st = relay.wait(give_up);
  if (!st && st.code() == ErrorCode::kTimeout)
    relay.fail(
        Status(ErrorCode::kTimeout, fmt::format("QEMU did not connect to {} within {} s",
                                                qemu.unix_path, config.accept_timeout_ms / 1000)),
        true);
  relay.stop();
  relay.fill_report(r);
  return r;
}

BridgeReport run_bridge_dest(std::unique_ptr<transport::Connection> conn, const QemuEndpoint& qemu,
                             const BridgeConfig& config, BridgeProgress* progress) {
  BridgeReport r;
  r.role = "bridge-destination";
  r.codec = pipeline::codec_name(config.codec.mode);
  r.queues = conn->queue_count();
  r.transport = conn->transport_name();
  r.peer = conn->describe();
  auto t0 = Clock::now();
  bool stdio_taken = false;
  auto opener = [&](uint16_t id) -> Result<LocalChannel> {
    if (qemu.stdio()) {
      if (id != 0 || stdio_taken)
        return Status(ErrorCode::kInvalidArgument,
                      "the source QEMU opened a second channel, but exec:/stdio carries one "
                      "(multifd needs unix sockets)");
      stdio_taken = true;
      return LocalChannel::from_stdio();
    }
    RS_ASSIGN_OR_RETURN(UniqueFd fd, connect_unix(qemu.unix_path, config.qemu_connect_timeout_ms));
    return LocalChannel::from_socket(std::move(fd));
  };
  Relay relay(*conn, Relay::Side::kDest, config, progress, opener);
  if (Status st = relay.handshake(10s); !st) {
    r.error = st;
    return r;
  }
  relay.start();
  r.setup_ms = ms_since(t0);
  if (progress) progress->setup_ms = r.setup_ms;
  Status st = relay.wait();
  (void)st;  // fill_report() carries the outcome
  relay.stop();
  relay.fill_report(r);
  return r;
}

}  // namespace ramshift::qemu
