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
  j["failed_sessions"] = failed_sessions;
  return j.dump(2);
}

namespace {

// A connected, greeted transport connection and the relay on it.
struct Joined {
  std::unique_ptr<transport::Connection> conn;
  std::unique_ptr<Relay> relay;
};

// Connects to the destination bridge and exchanges HELLO. The first session retries only a
// refusal, for config.connect_retry_ms (the destination bridge may not be up yet); a recovery
// session retries every failure until `until` (the link may still be cut, the destination
// bridge may not have seen the old session end).
Result<Joined> join(const transport::Uri& to, const BridgeConfig& config, BridgeProgress* progress,
                    bool recovering, Clock::time_point until) {
  for (;;) {
    auto conn = transport::connect(to, config.queues, config.transport);
    Status st =
        conn ? Status::ok() : conn.status().with_context("connecting to the destination bridge");
    if (conn) {
      auto relay = std::make_unique<Relay>(**conn, Relay::Side::kSource, config, progress);
      st = relay->handshake(10s);
      if (st) return Joined{std::move(conn).value(), std::move(relay)};
    }
    const bool retry = recovering ? !migration::cancel_requested(config.cancel)
                                  : st.code() == ErrorCode::kUnreachable;
    if (!retry || Clock::now() >= until) return st;
    log::debug("bridge: {}; retrying", st.message());
    std::this_thread::sleep_for(recovering ? 250ms : 100ms);
  }
}

// One session of the source bridge: joins the destination bridge, then relays every channel
// QEMU opens until all have closed or the relay fails. `first` is a connection QEMU opened
// before the session was joined (recovery: QEMU's resume starts the session); `next` gets a
// connection accepted once this session had failed (it is the next session's first).
void source_session(const transport::Uri& to, const QemuEndpoint& qemu,
                    std::optional<UnixListener>& listener, const BridgeConfig& config,
                    BridgeProgress* progress, const std::function<void()>& on_ready, UniqueFd first,
                    UniqueFd& next, BridgeReport& r) {
  auto t0 = Clock::now();
  const bool recovering = first.valid();
  auto joined = join(to, config, progress, recovering,
                     recovering ? t0 + std::chrono::milliseconds(config.recover_wait_ms)
                                : t0 + std::chrono::milliseconds(config.connect_retry_ms));
  if (!joined) {
    r.error = joined.status();
    return;  // `first` closes: QEMU sees its channel fail
  }
  transport::Connection& conn = *joined->conn;
  Relay& relay = *joined->relay;
  r.queues = conn.queue_count();
  r.transport = conn.transport_name();
  relay.start();
  r.setup_ms = ms_since(t0);
  if (progress) progress->setup_ms = r.setup_ms;
  log::info("bridge: connected to {} in {:.0f} ms", conn.describe(), r.setup_ms);
  if (on_ready) on_ready();

  auto accept_deadline = Clock::now() + std::chrono::milliseconds(config.accept_timeout_ms);
  auto give_up = [&] { return config.accept_timeout_ms > 0 && Clock::now() >= accept_deadline; };
  Status st;
  if (qemu.stdio()) {
    auto ch = LocalChannel::from_stdio();
    st = ch ? relay.add_channel(std::move(ch).value()) : ch.status();
  } else {
    if (first.valid()) {
      auto ch = LocalChannel::from_socket(std::move(first));
      st = ch ? relay.add_channel(std::move(ch).value()) : ch.status();
    }
    // Accept until every channel has closed: QEMU opens its multifd channels after the main.
    while (st && !relay.finished()) {
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
      // QEMU reconnects only after it saw this session's channels fail (its post-copy
      // resume): such a connection belongs to the next session, not to this dead relay.
      if (relay.finished()) {
        next = std::move(fd).value();
        break;
      }
      auto ch = LocalChannel::from_socket(std::move(fd).value());
      st = ch ? relay.add_channel(std::move(ch).value()) : ch.status();
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
}

// After a failed session: QEMU's next connection on `listener` (its post-copy resume), or
// the reason there is none within config.recover_wait_ms.
Result<UniqueFd> await_recovery(UnixListener& listener, const BridgeConfig& config) {
  const auto until = Clock::now() + std::chrono::milliseconds(config.recover_wait_ms);
  for (;;) {
    if (migration::cancel_requested(config.cancel))
      return config.cancel->status("source bridge, waiting for QEMU to recover");
    auto fd = listener.accept(100);
    if (fd || fd.status().code() != ErrorCode::kTimeout) return fd;
    if (Clock::now() >= until)
      return Status(ErrorCode::kTimeout,
                    fmt::format("QEMU did not reconnect to {} within {} s to recover",
                                listener.path(), config.recover_wait_ms / 1000));
  }
}

}  // namespace

BridgeReport run_bridge_source(const transport::Uri& to, const QemuEndpoint& qemu,
                               const BridgeConfig& config, BridgeProgress* progress,
                               const std::function<void()>& on_ready) {
  auto make_report = [&] {
    BridgeReport r;
    r.role = "bridge-source";
    r.codec = config.multifd_aware ? pipeline::codec_name(config.codec.mode) : "passthrough";
    r.transport = to.scheme;
    r.peer = to.to_string();
    return r;
  };
  // The QEMU side first: a bad path is a usage error before anything connects.
  std::optional<UnixListener> listener;
  if (!qemu.stdio()) {
    auto l = UnixListener::open(qemu.unix_path);
    if (!l) {
      BridgeReport r = make_report();
      r.error = l.status();
      return r;
    }
    listener.emplace(std::move(l).value());
  }
  std::vector<std::string> failed;
  UniqueFd first;  // QEMU's connection that starts the next session (none: -1)
  for (;;) {
    BridgeReport r = make_report();
    UniqueFd next;
    source_session(to, qemu, listener, config, progress, failed.empty() ? on_ready : nullptr,
                   std::move(first), next, r);
    if (r.completed || !config.recover || qemu.stdio() ||
        migration::cancel_requested(config.cancel) || r.setup_ms == 0) {
      // setup_ms == 0: the session never joined, so the peer bridge is not there at all.
      r.failed_sessions = std::move(failed);
      return r;
    }
    failed.push_back(r.error.message());
    log::warn("bridge: session {} failed ({}); waiting up to {} s for QEMU to recover",
              failed.size(), r.error.message(), config.recover_wait_ms / 1000);
    auto fd = next.valid() ? Result<UniqueFd>(std::move(next)) : await_recovery(*listener, config);
    if (!fd) {
      r.error = fd.status().with_context(r.error.message());
      r.failed_sessions = std::move(failed);
      r.failed_sessions.pop_back();  // it is this report's own error
      return r;
    }
    log::info("bridge: QEMU reconnected; starting session {}", failed.size() + 1);
    first = std::move(fd).value();
  }
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

namespace ramshift::qemu {

BridgeReport serve_bridge_dest(transport::Listener& listener, const QemuEndpoint& qemu,
                               const BridgeConfig& config, BridgeProgress* progress,
                               int first_wait_ms,
                               const std::function<void(const std::string&)>& on_session) {
  std::vector<std::string> failed;
  auto wait_ms = first_wait_ms;
  for (;;) {
    const auto until = Clock::now() + std::chrono::milliseconds(wait_ms);
    Result<std::unique_ptr<transport::Connection>> conn = Status(ErrorCode::kTimeout, "not yet");
    while (!conn) {
      if (migration::cancel_requested(config.cancel)) {
        conn = config.cancel->status("no source bridge was connected");
        break;
      }
      conn = listener.accept(200ms);
      if (!conn && conn.status().code() != ErrorCode::kTimeout) break;
      if (!conn && wait_ms > 0 && Clock::now() >= until) {
        conn = Status(ErrorCode::kTimeout,
                      fmt::format("no source bridge connected within {} s", wait_ms / 1000.0));
        break;
      }
    }
    if (!conn) {
      BridgeReport r;
      r.role = "bridge-destination";
      r.codec = pipeline::codec_name(config.codec.mode);
      r.error = failed.empty() ? conn.status() : conn.status().with_context(failed.back());
      if (!failed.empty()) failed.pop_back();  // it is this report's own error
      r.failed_sessions = std::move(failed);
      return r;
    }
    log::info("bridge: accepted {}", (*conn)->describe());
    if (on_session) on_session((*conn)->describe());
    BridgeReport r = run_bridge_dest(std::move(conn).value(), qemu, config, progress);
    if (r.completed || !config.recover || qemu.stdio() ||
        migration::cancel_requested(config.cancel)) {
      r.failed_sessions = std::move(failed);
      return r;
    }
    failed.push_back(r.error.message());
    log::warn("bridge: session {} failed ({}); waiting up to {} s for the source bridge to return",
              failed.size(), r.error.message(), config.recover_wait_ms / 1000);
    wait_ms = config.recover_wait_ms;
  }
}

}  // namespace ramshift::qemu
