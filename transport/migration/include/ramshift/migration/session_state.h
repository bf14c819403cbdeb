// The migration session's states, one machine per end, as docs/protocol.md ("States")
// draws them: an enum of states, an enum of events (a frame sent or received, or a local
// step such as pausing the guest), and a pure transition function that refuses an event the
// state does not allow ("commit received in state table_sent; it is legal only in ...").
//
// The run classes (source.cc, destination.cc) hold one Session each and ask it what they
// may do: whether a paused guest may still be resumed here, whether the guest may run there.
// So the hand-off's safety rules are properties of the state, unit-tested once:
//   - the source releases the guest only on COMMIT (kLiveDigestSent --commit--> kReleased),
//     and never resumes it once released;
//   - the destination runs it only after HANDOFF (kLiveCommitted --handoff--> kRunning).
//
// Post-copy forks a live session after DEVICE_STATE: POSTCOPY_START gives the guest to the
// destination at once (source kPostcopyActive: never resumed here again; destination
// kPostcopyRunning: it runs there while its missing pages follow). The rest of the memory
// travels, the destination confirms it placed every page (POSTCOPY_PLACED), and the DIGEST
// and COMMIT that follow check the transfer as they do for pre-copy. A cancel is refused in
// every post-copy state: the guest already runs on the destination and needs the source's
// pages, so stopping either end would lose it.
//
// Not thread-safe: each end's control thread owns its Session.
#pragma once

#include <cstddef>
#include <optional>

#include "ramshift/base/status.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

enum class SourceState : unsigned char {
  kConnecting,          // connecting the N + 1 queues; nothing sent yet
  kHelloSent,           // HELLO sent; waiting for the destination's
  kHelloReceived,       // versions agree; the region table goes next
  kTableSent,           // REGION_TABLE sent; waiting for READY (MEMORY_KEYS may come)
  kStreaming,           // rounds while the guest runs (an image: its only round)
  kPaused,              // live guest paused: its final round
  kDeviceStateSent,     // live guest paused, DEVICE_STATE sent
  kImageDigestSent,     // image: DIGEST sent; waiting for COMMIT (or VERIFY_MISMATCH)
  kImageRepairing,      // image, --verify full: resending the chunks the destination got wrong
  kLiveDigestSent,      // live guest paused, DIGEST sent; waiting for COMMIT (or VERIFY_MISMATCH)
  kRepairing,           // --verify full: resending the chunks the destination got wrong, paused
  kReleased,            // COMMIT received: the guest belongs to the destination now
  kHandedOff,           // HANDOFF sent; waiting for the BYE that says the guest runs there
  kTakenBack,           // COMMIT ran late: the guest runs here again; SWITCHOVER_ABORT goes next
  kAbortingSwitchover,  // SWITCHOVER_ABORT sent after the guest was resumed; awaiting
                        // SWITCHOVER_ABORTED (a COMMIT on the way is dropped)
  kPostcopyActive,      // POSTCOPY_START sent: the guest is the destination's; serving its pages
  kPostcopyPlaced,      // POSTCOPY_PLACED received: every page is there; DIGEST goes next
  kPostcopyDigestSent,  // post-copy: DIGEST sent; waiting for COMMIT
  kDone,                // image committed, or the guest runs on the destination
  kFailed,              // a local error, timeout or lost connection (ERROR sent if possible)
  kPeerFailed,          // the destination sent ERROR
  kCancelled,           // cancelled here (a signal, cancel.h): ERROR sent, the guest kept
};
inline constexpr size_t kSourceStateCount = static_cast<size_t>(SourceState::kCancelled) + 1;

enum class SourceEvent : unsigned char {
  kHelloSent,
  kHelloReceived,
  kRegionTableSent,
  kReadyReceived,
  kMemoryKeysReceived,
  kRoundEndReceived,  // the destination placed a whole round
  kGuestPaused,       // switchover: the convergence policy said the rest fits the downtime
  kGuestResumed,      // switchover aborted: its pages or verdict ran late (switchover.h)
  kDeviceStateSent,
  kDigestSent,
  kCommitReceived,
  kVerifyMismatchReceived,  // --verify full: the destination's memory differs; resend
  kHandOffSent,
  kByeReceived,
  kSwitchoverAbortSent,        // COMMIT ran late (switchover.h): guest resumed
  kSwitchoverAbortedReceived,  // the destination dropped its copy: pre-copy again
  kPostcopyStartSent,          // post-copy: the guest now runs on the destination
  kPageRequestReceived,        // post-copy: the destination's guest faulted on pages
  kPostcopyRunningReceived,    // post-copy: the guest runs there (the downtime ended)
  kPostcopyPlacedReceived,     // post-copy: the destination holds every page
  kPostcopyDiscardSent,        // hybrid, guest running: the destination drops these pages now
  kPostcopyDiscardedReceived,  // hybrid: it dropped them
  kErrorReceived,
  kFailure,    // a local error, a timeout or a lost connection
  kCancelled,  // the user cancelled (cancel.h); held inside the hand-off window
};
inline constexpr size_t kSourceEventCount = static_cast<size_t>(SourceEvent::kCancelled) + 1;

enum class DestinationState : unsigned char {
  kAccepted,                // connection accepted; waiting for HELLO
  kHelloReceived,           // the source's HELLO checked; ours goes next
  kHelloSent,               // HELLO answered; waiting for REGION_TABLE
  kTableReceived,           // memory (or PATH.partial) mapped; READY goes next
  kReceiving,               // READY sent: rounds of pages arrive (MEMORY_KEYS go out)
  kDeviceStateReceived,     // a live guest, paused on the source: its final round arrives
  kImageDigestReceived,     // image: comparing digests, renaming the output
  kImageRepairing,          // image, --verify full: asked for chunks again; their pages arrive
  kLiveDigestReceived,      // live: comparing digests, taking the guest over, paused
  kRepairing,               // --verify full: asked for chunks again; their pages arrive
  kImageCommitted,          // COMMIT sent; waiting a moment for BYE (or the close)
  kLiveCommitted,           // COMMIT sent; the verified guest waits here paused for HANDOFF
  kRunning,                 // HANDOFF received: the guest runs here; BYE tells the source
  kPostcopyRunning,         // POSTCOPY_START received: the guest runs here; its pages arrive
  kPostcopyPlaced,          // every page placed, POSTCOPY_PLACED sent; waiting for DIGEST
  kPostcopyDigestReceived,  // post-copy: comparing the digest (the guest keeps running)
  kPostcopyCommitted,       // post-copy: COMMIT sent; the guest runs on, then is checked
  kDone,                    // image in place, or the resumed guest ran and was checked
  kFailed,                  // a local error, timeout or lost connection (ERROR sent if possible)
  kPeerFailed,              // the source sent ERROR
  kCancelled,               // cancelled here (a signal, cancel.h): ERROR sent, output removed
};
inline constexpr size_t kDestinationStateCount =
    static_cast<size_t>(DestinationState::kCancelled) + 1;

enum class DestinationEvent : unsigned char {
  kHelloReceived,
  kHelloSent,
  kRegionTableReceived,
  kReadySent,
  kDeviceStateReceived,
  kDigestReceived,
  kCommitSent,
  kVerifyMismatchSent,  // --verify full: memory differs from the source's; resend these
  kHandOffReceived,
  kSwitchoverAbortReceived,  // the source resumed its guest: drop the verified copy held here
  kPostcopyStartReceived,    // post-copy: resume the guest here now
  kPostcopyPlacedSent,       // post-copy: every page the start named is placed
  kPostcopyDiscardReceived,  // hybrid, the source's guest running: drop these pages now
  kPostcopyDiscardedSent,    // hybrid: they are dropped
  kFinished,                 // image: BYE or the close came; live: the resumed guest was checked
  kErrorReceived,
  kFailure,    // a local error, a timeout or a lost connection
  kCancelled,  // the user cancelled (cancel.h); held inside the hand-off window
};
inline constexpr size_t kDestinationEventCount =
    static_cast<size_t>(DestinationEvent::kCancelled) + 1;

// The state after `event`, or kProtocol (an event the peer caused: a frame received) or
// kInternal (one this end caused) naming the event, the state and where it would be legal.
// Failure events are legal in every state but the four final ones. A cancel is legal only
// outside the hand-off window (the rows in session_state.cc): from the source's DIGEST to the
// hand-off's end the run does not stop for it, so the guest never ends up on neither host
// or on both.
Result<SourceState> next_state(SourceState state, SourceEvent event);
Result<DestinationState> next_state(DestinationState state, DestinationEvent event);

// Lower-case names for messages and logs ("live_digest_sent", "commit received").
const char* state_name(SourceState state);
const char* state_name(DestinationState state);
const char* event_name(SourceEvent event);
const char* event_name(DestinationEvent event);

// kDone, kFailed, kPeerFailed and kCancelled: nothing follows.
bool is_final(SourceState state);
bool is_final(DestinationState state);

// The source's guest is paused (its final round, or later).
bool source_guest_paused(SourceState state);

// Whether the source may resume its paused guest after failing in `state`: the guest is
// paused and was not released. False from kReleased on: the destination may run it.
bool source_may_resume_guest(SourceState state);

// Whether the destination may run the guest: only once HANDOFF said the source let it go, or
// POSTCOPY_START gave it over before its memory.
bool destination_may_run_guest(DestinationState state);

// The source gave the guest to the destination before its memory (POSTCOPY_START sent): a
// failure now loses it, since neither end holds a whole, current copy it may run.
bool source_in_postcopy(SourceState state);
bool destination_in_postcopy(DestinationState state);

// The source's event for a control frame it sent or received, or nullopt for one that does
// not move the session (the courtesy BYE after an image's COMMIT; ERROR, which is a failure).
std::optional<SourceEvent> source_sent_event(wire::FrameType type);
std::optional<SourceEvent> source_received_event(wire::FrameType type);

// One end's session: its state, and the state it failed in (what it may still do after a
// failure, such as resuming the guest, depends on how far it got).
template <typename State, typename Event>
class Session {
 public:
  explicit Session(State initial) : state_(initial), failed_in_(initial) {}

  State state() const { return state_; }
  State failed_in() const { return failed_in_; }  // also the state a cancel came in
  bool peer_failed() const { return state_ == State::kPeerFailed; }

  // Applies `event`; an illegal one leaves the state as it was and returns the error.
  Status advance(Event event) {
    RS_ASSIGN_OR_RETURN(State next, next_state(state_, event));
    if (next == State::kFailed || next == State::kPeerFailed || next == State::kCancelled)
      failed_in_ = state_;
    state_ = next;
    return Status::ok();
  }

  // Ends the session in failure: `cause` is kFailure (here) or kErrorReceived (the peer's
  // ERROR). Once it has ended nothing changes: the first failure is the one that counts.
  void fail(Event cause = Event::kFailure) {
    if (!is_final(state_)) (void)advance(cause);
  }

  // Ends the session as cancelled, where its table allows it; inside the hand-off window the
  // error says so and the state stays (the cancel waits for the hand-off to resolve).
  Status cancel() { return advance(Event::kCancelled); }
  bool cancelled() const { return state_ == State::kCancelled; }

 private:
  State state_;
  State failed_in_;
};

using SourceSession = Session<SourceState, SourceEvent>;
using DestinationSession = Session<DestinationState, DestinationEvent>;

}  // namespace ramshift::migration
