// A port's raw ceiling (`ramshift bench --raw`, issue 28): one side blasts fixed-size frames
// as fast as the port takes them, the other counts what arrives, with no protocol between
// them (no ACKs, no retransmission, no window, no pacing), as DPDK's testpmd does in txonly /
// rxonly. What the protocol's own bench reaches over the same port, set against this, is the
// protocol's cost.
//
// A backend offers it through `Backend::raw_bench` (registry.h); only dpdk:// does. This
// header names no backend type: the CLI reaches the backend through the registry.
//
// Units: payload bytes are those after every header (Ethernet, IPv4, UDP and ramshift's
// 20-byte frame header), the bytes the protocol's data frames carry; wire bytes are whole
// Ethernet frames as the port sees them (no preamble, FCS or inter-frame gap).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"
#include "ramshift/transport/transport.h"
#include "ramshift/transport/uri.h"

namespace ramshift::transport {

struct RawBenchConfig {
  enum class Role { kSender, kReceiver };
  Role role = Role::kSender;
  // Sender: the receiver's address (dpdk://IP:PORT). Receiver: where it listens.
  Uri address;
  BackendSettings settings;  // the backend's own (--dpdk-eal, --dpdk-local-ip, ...)
  // Payload bytes per frame; 0: the largest the port's MTU allows (1,452 at 1,500), the size
  // of the protocol's full data frames. Sender only (the receiver counts what arrives).
  uint32_t payload_bytes = 0;
  // Sender: how long to blast. Receiver: the run ends this long plus `grace` after the first
  // frame at the latest, or at the sender's end marker, or after `grace` with no frame.
  Millis duration{3000};
  Millis grace{2000};
  // Sender: how long finding the receiver (ARP) may take.
  Millis connect_timeout{10000};
  // Set (by a signal handler) to end the run early; may be null.
  const std::atomic<bool>* stop = nullptr;
  // Receiver: called once it answers on `address`, before the first frame (scripts wait for it).
  std::function<void(const Uri&)> on_listening;
};

struct RawBenchReport {
  RawBenchConfig::Role role = RawBenchConfig::Role::kSender;
  uint32_t payload_bytes = 0;  // per frame (the receiver: of the first frame it counted)
  uint32_t wire_bytes = 0;     // per frame, Ethernet header included
  // Sender: from the first burst to the last. Receiver: from the first frame to the last.
  double seconds = 0;
  // Sender: frames built and handed to the port's transmit call, and those it took (the rest
  // found its ring full and were freed, as testpmd does without --tx-retry).
  uint64_t offered_frames = 0;
  uint64_t accepted_frames = 0;
  // Receiver: our frames counted, and everything else that arrived (not ours, malformed,
  // another address) but ARP, which the port's stack answers as ever.
  uint64_t received_frames = 0;
  uint64_t foreign_frames = 0;
  // Receiver: whether the sender's end marker arrived, and the accepted count it carried.
  bool end_marker = false;
  uint64_t sender_accepted_frames = 0;
  uint64_t payload_total = 0;  // payload bytes sent (accepted) or received
  uint64_t wire_total = 0;     // wire bytes sent (accepted) or received

  uint64_t frames() const {
    return role == RawBenchConfig::Role::kSender ? accepted_frames : received_frames;
  }
  double frames_per_s() const { return seconds > 0 ? double(frames()) / seconds : 0; }
  double payload_gbit_per_s() const { return seconds > 0 ? payload_total * 8e-9 / seconds : 0; }
  double wire_gbit_per_s() const { return seconds > 0 ? wire_total * 8e-9 / seconds : 0; }
};

using RawBenchFunction = std::function<Result<RawBenchReport>(const RawBenchConfig&)>;

// Runs the raw bench of `config.address`'s backend; kInvalidArgument (a usage error) when the
// backend has none or this binary lacks it.
Result<RawBenchReport> run_raw_bench(const RawBenchConfig& config);

}  // namespace ramshift::transport
