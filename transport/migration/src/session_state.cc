#include "ramshift/migration/session_state.h"

#include <fmt/format.h>

#include <string>

namespace ramshift::migration {
namespace {

template <typename State, typename Event>
struct Row {
  State from;
  Event event;
  State to;
};

using S = SourceState;
using SE = SourceEvent;
using D = DestinationState;
using DE = DestinationEvent;

// Every legal step but the failures, which are legal in every state that is not final.
// docs/protocol.md ("States") draws these tables; keep the two in step.
constexpr Row<S, SE> kSourceRows[] = {
    {S::kConnecting, SE::kHelloSent, S::kHelloSent},
    {S::kHelloSent, SE::kHelloReceived, S::kHelloReceived},
    {S::kHelloReceived, SE::kRegionTableSent, S::kTableSent},
    {S::kTableSent, SE::kReadyReceived, S::kStreaming},
    {S::kStreaming, SE::kRoundEndReceived, S::kStreaming},
    {S::kStreaming, SE::kGuestPaused, S::kPaused},
    {S::kStreaming, SE::kDigestSent, S::kImageDigestSent},  // an image has one round
    {S::kPaused, SE::kRoundEndReceived, S::kPaused},
    // The guard (switchover.h): the last pages ran late, the guest runs again, pre-copy goes
    // on. Only before DEVICE_STATE: until then the destination knows nothing of the pause.
    {S::kPaused, SE::kGuestResumed, S::kStreaming},
    {S::kPaused, SE::kDeviceStateSent, S::kDeviceStateSent},
    {S::kDeviceStateSent, SE::kDigestSent, S::kLiveDigestSent},
    {S::kImageDigestSent, SE::kCommitReceived, S::kDone},
    // --verify full of an image (a file that changed while it was read): the same repair.
    {S::kImageDigestSent, SE::kVerifyMismatchReceived, S::kImageRepairing},
    {S::kImageRepairing, SE::kRoundEndReceived, S::kImageRepairing},
    {S::kImageRepairing, SE::kDigestSent, S::kImageDigestSent},
    // The one way into kReleased: the destination holds a verified copy.
    {S::kLiveDigestSent, SE::kCommitReceived, S::kReleased},
    // --verify full: the destination's memory differs; resend, then a new DIGEST.
    {S::kLiveDigestSent, SE::kVerifyMismatchReceived, S::kRepairing},
    {S::kRepairing, SE::kRoundEndReceived, S::kRepairing},
    {S::kRepairing, SE::kDigestSent, S::kLiveDigestSent},
    {S::kReleased, SE::kHandOffSent, S::kHandedOff},
    {S::kHandedOff, SE::kByeReceived, S::kDone},
    // The guard's second stage (switchover.h): no COMMIT in time. The guest runs here again
    // first (so the pause ends at once, and a failure to send the abort finds it running);
    // the destination, which runs it only after HANDOFF, drops its copy, and a COMMIT that
    // crossed the abort on the way is dropped here.
    {S::kLiveDigestSent, SE::kGuestResumed, S::kTakenBack},
    {S::kTakenBack, SE::kSwitchoverAbortSent, S::kAbortingSwitchover},
    {S::kAbortingSwitchover, SE::kCommitReceived, S::kAbortingSwitchover},
    {S::kAbortingSwitchover, SE::kSwitchoverAbortedReceived, S::kStreaming},
    // MEMORY_KEYS may come any time after REGION_TABLE (rdma): taken in passing.
    {S::kTableSent, SE::kMemoryKeysReceived, S::kTableSent},
    {S::kStreaming, SE::kMemoryKeysReceived, S::kStreaming},
    {S::kPaused, SE::kMemoryKeysReceived, S::kPaused},
    {S::kDeviceStateSent, SE::kMemoryKeysReceived, S::kDeviceStateSent},
    {S::kImageDigestSent, SE::kMemoryKeysReceived, S::kImageDigestSent},
    {S::kLiveDigestSent, SE::kMemoryKeysReceived, S::kLiveDigestSent},
    {S::kRepairing, SE::kMemoryKeysReceived, S::kRepairing},
    {S::kImageRepairing, SE::kMemoryKeysReceived, S::kImageRepairing},
    {S::kReleased, SE::kMemoryKeysReceived, S::kReleased},
    {S::kHandedOff, SE::kMemoryKeysReceived, S::kHandedOff},
    {S::kAbortingSwitchover, SE::kMemoryKeysReceived, S::kAbortingSwitchover},
    // Post-copy: after DEVICE_STATE the guest goes to the destination before its memory.
    // Hybrid: before the pause the destination drops the pages dirtied since they were sent.
    {S::kStreaming, SE::kPostcopyDiscardSent, S::kStreaming},
    {S::kStreaming, SE::kPostcopyDiscardedReceived, S::kStreaming},
    {S::kDeviceStateSent, SE::kPostcopyStartSent, S::kPostcopyActive},
    {S::kPostcopyActive, SE::kPageRequestReceived, S::kPostcopyActive},
    {S::kPostcopyActive, SE::kPostcopyRunningReceived, S::kPostcopyActive},
    {S::kPostcopyActive, SE::kMemoryKeysReceived, S::kPostcopyActive},
    {S::kPostcopyActive, SE::kPostcopyPlacedReceived, S::kPostcopyPlaced},
    // Requests sent before the destination's last page arrived may still come in.
    {S::kPostcopyPlaced, SE::kPageRequestReceived, S::kPostcopyPlaced},
    {S::kPostcopyPlaced, SE::kDigestSent, S::kPostcopyDigestSent},
    {S::kPostcopyDigestSent, SE::kCommitReceived, S::kDone},
    // A cancel, everywhere but the hand-off window (kReleased, kHandedOff: the guest may be
    // the destination's already). Before COMMIT the source still owns the guest: it sends
    // ERROR, and a destination waiting for HANDOFF drops its copy.
    {S::kConnecting, SE::kCancelled, S::kCancelled},
    {S::kHelloSent, SE::kCancelled, S::kCancelled},
    {S::kHelloReceived, SE::kCancelled, S::kCancelled},
    {S::kTableSent, SE::kCancelled, S::kCancelled},
    {S::kStreaming, SE::kCancelled, S::kCancelled},
    {S::kPaused, SE::kCancelled, S::kCancelled},
    {S::kDeviceStateSent, SE::kCancelled, S::kCancelled},
    {S::kImageDigestSent, SE::kCancelled, S::kCancelled},
    {S::kImageRepairing, SE::kCancelled, S::kCancelled},
    {S::kLiveDigestSent, SE::kCancelled, S::kCancelled},
    {S::kTakenBack, SE::kCancelled, S::kCancelled},
    {S::kAbortingSwitchover, SE::kCancelled, S::kCancelled},
};

constexpr Row<D, DE> kDestinationRows[] = {
    {D::kAccepted, DE::kHelloReceived, D::kHelloReceived},
    {D::kHelloReceived, DE::kHelloSent, D::kHelloSent},
    {D::kHelloSent, DE::kRegionTableReceived, D::kTableReceived},
    {D::kTableReceived, DE::kReadySent, D::kReceiving},
    {D::kReceiving, DE::kDeviceStateReceived, D::kDeviceStateReceived},
    {D::kReceiving, DE::kDigestReceived, D::kImageDigestReceived},
    {D::kDeviceStateReceived, DE::kDigestReceived, D::kLiveDigestReceived},
    {D::kImageDigestReceived, DE::kCommitSent, D::kImageCommitted},
    {D::kLiveDigestReceived, DE::kCommitSent, D::kLiveCommitted},
    {D::kLiveDigestReceived, DE::kVerifyMismatchSent, D::kRepairing},
    {D::kRepairing, DE::kDigestReceived, D::kLiveDigestReceived},
    {D::kImageDigestReceived, DE::kVerifyMismatchSent, D::kImageRepairing},
    {D::kImageRepairing, DE::kDigestReceived, D::kImageDigestReceived},
    {D::kImageCommitted, DE::kFinished, D::kDone},
    // The one way into kRunning: the source let the guest go.
    {D::kLiveCommitted, DE::kHandOffReceived, D::kRunning},
    // The source resumed its guest instead (COMMIT reached it too late): the copy here,
    // which never ran, is dropped and rounds of pages follow again.
    {D::kLiveCommitted, DE::kSwitchoverAbortReceived, D::kReceiving},
    {D::kRunning, DE::kFinished, D::kDone},
    // Post-copy: the guest runs here from POSTCOPY_START on, while its pages arrive.
    {D::kReceiving, DE::kPostcopyDiscardReceived, D::kReceiving},
    {D::kReceiving, DE::kPostcopyDiscardedSent, D::kReceiving},
    {D::kDeviceStateReceived, DE::kPostcopyStartReceived, D::kPostcopyRunning},
    {D::kPostcopyRunning, DE::kPostcopyPlacedSent, D::kPostcopyPlaced},
    {D::kPostcopyPlaced, DE::kDigestReceived, D::kPostcopyDigestReceived},
    {D::kPostcopyDigestReceived, DE::kCommitSent, D::kPostcopyCommitted},
    {D::kPostcopyCommitted, DE::kFinished, D::kDone},
    // A cancel, until the digest arrives: from then on the outcome is the source's to decide
    // (COMMIT goes out, then HANDOFF or ERROR comes), and a guest verified here either runs
    // here or nowhere until the hand-off says which.
    {D::kAccepted, DE::kCancelled, D::kCancelled},
    {D::kHelloReceived, DE::kCancelled, D::kCancelled},
    {D::kHelloSent, DE::kCancelled, D::kCancelled},
    {D::kTableReceived, DE::kCancelled, D::kCancelled},
    {D::kReceiving, DE::kCancelled, D::kCancelled},
    {D::kDeviceStateReceived, DE::kCancelled, D::kCancelled},
};

bool caused_by_peer(SourceEvent e) {
  switch (e) {
    case SE::kHelloReceived:
    case SE::kReadyReceived:
    case SE::kMemoryKeysReceived:
    case SE::kRoundEndReceived:
    case SE::kCommitReceived:
    case SE::kVerifyMismatchReceived:
    case SE::kByeReceived:
    case SE::kSwitchoverAbortedReceived:
    case SE::kPageRequestReceived:
    case SE::kPostcopyRunningReceived:
    case SE::kPostcopyPlacedReceived:
    case SE::kPostcopyDiscardedReceived:
    case SE::kErrorReceived:
      return true;
    default:
      return false;
  }
}

bool caused_by_peer(DestinationEvent e) {
  switch (e) {
    case DE::kHelloReceived:
    case DE::kRegionTableReceived:
    case DE::kDeviceStateReceived:
    case DE::kDigestReceived:
    case DE::kHandOffReceived:
    case DE::kSwitchoverAbortReceived:
    case DE::kPostcopyStartReceived:
    case DE::kPostcopyDiscardReceived:
    case DE::kErrorReceived:
      return true;
    default:
      return false;
  }
}

template <typename State, typename Event, size_t N>
Result<State> step(const Row<State, Event> (&rows)[N], const char* end, State state, Event event) {
  const ErrorCode code = caused_by_peer(event) ? ErrorCode::kProtocol : ErrorCode::kInternal;
  if (event == Event::kFailure || event == Event::kErrorReceived) {
    if (!is_final(state)) return event == Event::kFailure ? State::kFailed : State::kPeerFailed;
    return Status(code, fmt::format("{} session: {} in state {}, which is final", end,
                                    event_name(event), state_name(state)));
  }
  std::string legal_in;
  for (const auto& row : rows) {
    if (row.from == state && row.event == event) return row.to;
    if (row.event == event)
      legal_in += (legal_in.empty() ? "" : ", ") + std::string(state_name(row.from));
  }
  return Status(code, fmt::format("{} session: {} in state {}; legal only in {}", end,
                                  event_name(event), state_name(state), legal_in));
}

}  // namespace

Result<SourceState> next_state(SourceState state, SourceEvent event) {
  return step(kSourceRows, "source", state, event);
}

Result<DestinationState> next_state(DestinationState state, DestinationEvent event) {
  return step(kDestinationRows, "destination", state, event);
}

const char* state_name(SourceState state) {
  switch (state) {
    case S::kConnecting:
      return "connecting";
    case S::kHelloSent:
      return "hello_sent";
    case S::kHelloReceived:
      return "hello_received";
    case S::kTableSent:
      return "table_sent";
    case S::kStreaming:
      return "streaming";
    case S::kPaused:
      return "paused";
    case S::kDeviceStateSent:
      return "device_state_sent";
    case S::kImageDigestSent:
      return "image_digest_sent";
    case S::kImageRepairing:
      return "image_repairing";
    case S::kLiveDigestSent:
      return "live_digest_sent";
    case S::kRepairing:
      return "repairing";
    case S::kReleased:
      return "released";
    case S::kHandedOff:
      return "handed_off";
    case S::kTakenBack:
      return "taken_back";
    case S::kAbortingSwitchover:
      return "aborting_switchover";
    case S::kPostcopyActive:
      return "postcopy_active";
    case S::kPostcopyPlaced:
      return "postcopy_placed";
    case S::kPostcopyDigestSent:
      return "postcopy_digest_sent";
    case S::kDone:
      return "done";
    case S::kFailed:
      return "failed";
    case S::kPeerFailed:
      return "peer_failed";
    case S::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* state_name(DestinationState state) {
  switch (state) {
    case D::kAccepted:
      return "accepted";
    case D::kHelloReceived:
      return "hello_received";
    case D::kHelloSent:
      return "hello_sent";
    case D::kTableReceived:
      return "table_received";
    case D::kReceiving:
      return "receiving";
    case D::kDeviceStateReceived:
      return "device_state_received";
    case D::kImageDigestReceived:
      return "image_digest_received";
    case D::kImageRepairing:
      return "image_repairing";
    case D::kLiveDigestReceived:
      return "live_digest_received";
    case D::kRepairing:
      return "repairing";
    case D::kImageCommitted:
      return "image_committed";
    case D::kLiveCommitted:
      return "live_committed";
    case D::kRunning:
      return "running";
    case D::kPostcopyRunning:
      return "postcopy_running";
    case D::kPostcopyPlaced:
      return "postcopy_placed";
    case D::kPostcopyDigestReceived:
      return "postcopy_digest_received";
    case D::kPostcopyCommitted:
      return "postcopy_committed";
    case D::kDone:
      return "done";
    case D::kFailed:
      return "failed";
    case D::kPeerFailed:
      return "peer_failed";
    case D::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* event_name(SourceEvent event) {
  switch (event) {
    case SE::kHelloSent:
      return "hello sent";
    case SE::kHelloReceived:
      return "hello received";
    case SE::kRegionTableSent:
      return "region_table sent";
    case SE::kReadyReceived:
      return "ready received";
    case SE::kMemoryKeysReceived:
      return "memory_keys received";
    case SE::kRoundEndReceived:
      return "round_end received";
    case SE::kGuestPaused:
      return "guest paused";
    case SE::kGuestResumed:
      return "guest resumed";
    case SE::kDeviceStateSent:
      return "device_state sent";
    case SE::kDigestSent:
      return "digest sent";
    case SE::kCommitReceived:
      return "commit received";
    case SE::kVerifyMismatchReceived:
      return "verify_mismatch received";
    case SE::kHandOffSent:
      return "handoff sent";
    case SE::kByeReceived:
      return "bye received";
    case SE::kSwitchoverAbortSent:
      return "switchover_abort sent";
    case SE::kSwitchoverAbortedReceived:
      return "switchover_aborted received";
    case SE::kPostcopyStartSent:
      return "postcopy_start sent";
    case SE::kPageRequestReceived:
      return "page_request received";
    case SE::kPostcopyRunningReceived:
      return "postcopy_running received";
    case SE::kPostcopyPlacedReceived:
      return "postcopy_placed received";
    case SE::kPostcopyDiscardSent:
      return "postcopy_discard sent";
    case SE::kPostcopyDiscardedReceived:
      return "postcopy_discarded received";
    case SE::kErrorReceived:
      return "error received";
    case SE::kFailure:
      return "failure";
    case SE::kCancelled:
      return "cancel";
  }
  return "unknown";
}

const char* event_name(DestinationEvent event) {
  switch (event) {
    case DE::kHelloReceived:
      return "hello received";
    case DE::kHelloSent:
      return "hello sent";
    case DE::kRegionTableReceived:
      return "region_table received";
    case DE::kReadySent:
      return "ready sent";
    case DE::kDeviceStateReceived:
      return "device_state received";
    case DE::kDigestReceived:
      return "digest received";
    case DE::kCommitSent:
      return "commit sent";
    case DE::kVerifyMismatchSent:
      return "verify_mismatch sent";
    case DE::kHandOffReceived:
      return "handoff received";
    case DE::kSwitchoverAbortReceived:
      return "switchover_abort received";
    case DE::kPostcopyStartReceived:
      return "postcopy_start received";
    case DE::kPostcopyPlacedSent:
      return "postcopy_placed sent";
    case DE::kPostcopyDiscardReceived:
      return "postcopy_discard received";
    case DE::kPostcopyDiscardedSent:
      return "postcopy_discarded sent";
    case DE::kFinished:
      return "finished";
    case DE::kErrorReceived:
      return "error received";
    case DE::kFailure:
      return "failure";
    case DE::kCancelled:
      return "cancel";
  }
  return "unknown";
}

bool is_final(SourceState state) {
  return state == S::kDone || state == S::kFailed || state == S::kPeerFailed ||
         state == S::kCancelled;
}

bool is_final(DestinationState state) {
  return state == D::kDone || state == D::kFailed || state == D::kPeerFailed ||
         state == D::kCancelled;
}

bool source_guest_paused(SourceState state) {
  switch (state) {
    case S::kPaused:
    case S::kDeviceStateSent:
    case S::kLiveDigestSent:
    case S::kRepairing:
    case S::kReleased:
    case S::kHandedOff:
    case S::kPostcopyActive:
    case S::kPostcopyPlaced:
    case S::kPostcopyDigestSent:
      return true;
    default:
      return false;
  }
}

bool source_may_resume_guest(SourceState state) {
  // Paused and still ours: everything before COMMIT arrived. kReleased and kHandedOff are
  // paused too, but the destination may be running the guest (or about to).
  return state == S::kPaused || state == S::kDeviceStateSent || state == S::kLiveDigestSent ||
         state == S::kRepairing;
}

bool destination_may_run_guest(DestinationState state) {
  return state == D::kRunning || destination_in_postcopy(state);
}

bool source_in_postcopy(SourceState state) {
  return state == S::kPostcopyActive || state == S::kPostcopyPlaced ||
         state == S::kPostcopyDigestSent;
}

bool destination_in_postcopy(DestinationState state) {
  return state == D::kPostcopyRunning || state == D::kPostcopyPlaced ||
         state == D::kPostcopyDigestReceived || state == D::kPostcopyCommitted;
}

std::optional<SourceEvent> source_sent_event(wire::FrameType type) {
  switch (type) {
    case wire::FrameType::kHello:
      return SE::kHelloSent;
    case wire::FrameType::kRegionTable:
      return SE::kRegionTableSent;
    case wire::FrameType::kDeviceState:
    case wire::FrameType::kDeviceStateZstd:
      return SE::kDeviceStateSent;
    case wire::FrameType::kDigest:
      return SE::kDigestSent;
    case wire::FrameType::kHandOff:
      return SE::kHandOffSent;
    case wire::FrameType::kPostcopyStart:
      return SE::kPostcopyStartSent;
    case wire::FrameType::kPostcopyDiscard:
      return SE::kPostcopyDiscardSent;
    case wire::FrameType::kSwitchoverAbort:
      return SE::kSwitchoverAbortSent;
    default:
      return std::nullopt;
  }
}

std::optional<SourceEvent> source_received_event(wire::FrameType type) {
  switch (type) {
    case wire::FrameType::kHello:
      return SE::kHelloReceived;
    case wire::FrameType::kReady:
      return SE::kReadyReceived;
    case wire::FrameType::kMemoryKeys:
      return SE::kMemoryKeysReceived;
    case wire::FrameType::kRoundEnd:
      return SE::kRoundEndReceived;
    case wire::FrameType::kCommit:
      return SE::kCommitReceived;
    case wire::FrameType::kVerifyMismatch:
      return SE::kVerifyMismatchReceived;
    case wire::FrameType::kBye:
      return SE::kByeReceived;
    case wire::FrameType::kPageRequest:
      return SE::kPageRequestReceived;
    case wire::FrameType::kPostcopyRunning:
      return SE::kPostcopyRunningReceived;
    case wire::FrameType::kPostcopyPlaced:
      return SE::kPostcopyPlacedReceived;
    case wire::FrameType::kPostcopyDiscarded:
      return SE::kPostcopyDiscardedReceived;
    case wire::FrameType::kSwitchoverAborted:
      return SE::kSwitchoverAbortedReceived;
    case wire::FrameType::kError:
      return SE::kErrorReceived;
    default:
      return std::nullopt;
  }
}

}  // namespace ramshift::migration
