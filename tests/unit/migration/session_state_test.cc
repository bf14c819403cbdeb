#include "ramshift/migration/session_state.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace ramshift::migration {
namespace {

using S = SourceState;
using SE = SourceEvent;
using D = DestinationState;
using DE = DestinationEvent;

// The legal steps, written out again from docs/protocol.md ("States") rather than read from
// the implementation, so a row added or lost on either side fails here. Failures are apart.
const std::map<std::pair<S, SE>, S> kSourceLegal = {
    {{S::kConnecting, SE::kHelloSent}, S::kHelloSent},
    {{S::kHelloSent, SE::kHelloReceived}, S::kHelloReceived},
    {{S::kHelloReceived, SE::kRegionTableSent}, S::kTableSent},
    {{S::kTableSent, SE::kReadyReceived}, S::kStreaming},
    {{S::kStreaming, SE::kRoundEndReceived}, S::kStreaming},
    {{S::kStreaming, SE::kGuestPaused}, S::kPaused},
    {{S::kStreaming, SE::kDigestSent}, S::kImageDigestSent},
    {{S::kPaused, SE::kRoundEndReceived}, S::kPaused},
    {{S::kPaused, SE::kGuestResumed}, S::kStreaming},
    {{S::kPaused, SE::kDeviceStateSent}, S::kDeviceStateSent},
    {{S::kDeviceStateSent, SE::kDigestSent}, S::kLiveDigestSent},
    {{S::kImageDigestSent, SE::kCommitReceived}, S::kDone},
    {{S::kImageDigestSent, SE::kVerifyMismatchReceived}, S::kImageRepairing},
    {{S::kImageRepairing, SE::kRoundEndReceived}, S::kImageRepairing},
    {{S::kImageRepairing, SE::kDigestSent}, S::kImageDigestSent},
    {{S::kImageRepairing, SE::kMemoryKeysReceived}, S::kImageRepairing},
    {{S::kLiveDigestSent, SE::kCommitReceived}, S::kReleased},
    {{S::kLiveDigestSent, SE::kVerifyMismatchReceived}, S::kRepairing},
    {{S::kRepairing, SE::kRoundEndReceived}, S::kRepairing},
    {{S::kRepairing, SE::kDigestSent}, S::kLiveDigestSent},
    {{S::kRepairing, SE::kMemoryKeysReceived}, S::kRepairing},
    {{S::kReleased, SE::kHandOffSent}, S::kHandedOff},
    {{S::kHandedOff, SE::kByeReceived}, S::kDone},
    // The verdict ran late: the guest runs here again; the destination drops its copy.
    {{S::kLiveDigestSent, SE::kGuestResumed}, S::kTakenBack},
    {{S::kTakenBack, SE::kSwitchoverAbortSent}, S::kAbortingSwitchover},
    {{S::kTakenBack, SE::kCancelled}, S::kCancelled},
    {{S::kAbortingSwitchover, SE::kCommitReceived}, S::kAbortingSwitchover},
    {{S::kAbortingSwitchover, SE::kMemoryKeysReceived}, S::kAbortingSwitchover},
    {{S::kAbortingSwitchover, SE::kSwitchoverAbortedReceived}, S::kStreaming},
    {{S::kAbortingSwitchover, SE::kCancelled}, S::kCancelled},
    {{S::kTableSent, SE::kMemoryKeysReceived}, S::kTableSent},
    {{S::kStreaming, SE::kMemoryKeysReceived}, S::kStreaming},
    {{S::kPaused, SE::kMemoryKeysReceived}, S::kPaused},
    {{S::kDeviceStateSent, SE::kMemoryKeysReceived}, S::kDeviceStateSent},
    {{S::kImageDigestSent, SE::kMemoryKeysReceived}, S::kImageDigestSent},
    {{S::kLiveDigestSent, SE::kMemoryKeysReceived}, S::kLiveDigestSent},
    {{S::kReleased, SE::kMemoryKeysReceived}, S::kReleased},
    {{S::kHandedOff, SE::kMemoryKeysReceived}, S::kHandedOff},
    // Post-copy.
    {{S::kDeviceStateSent, SE::kPostcopyStartSent}, S::kPostcopyActive},
    {{S::kPostcopyActive, SE::kPageRequestReceived}, S::kPostcopyActive},
    {{S::kPostcopyActive, SE::kPostcopyRunningReceived}, S::kPostcopyActive},
    {{S::kPostcopyActive, SE::kMemoryKeysReceived}, S::kPostcopyActive},
    {{S::kPostcopyActive, SE::kPostcopyPlacedReceived}, S::kPostcopyPlaced},
    {{S::kPostcopyPlaced, SE::kPageRequestReceived}, S::kPostcopyPlaced},
    {{S::kPostcopyPlaced, SE::kDigestSent}, S::kPostcopyDigestSent},
    {{S::kPostcopyDigestSent, SE::kCommitReceived}, S::kDone},
    // Hybrid: discards while the guest still runs.
    {{S::kStreaming, SE::kPostcopyDiscardSent}, S::kStreaming},
    {{S::kStreaming, SE::kPostcopyDiscardedReceived}, S::kStreaming},
    // A cancel: everywhere but kReleased and kHandedOff (the hand-off window).
    {{S::kConnecting, SE::kCancelled}, S::kCancelled},
    {{S::kHelloSent, SE::kCancelled}, S::kCancelled},
    {{S::kHelloReceived, SE::kCancelled}, S::kCancelled},
    {{S::kTableSent, SE::kCancelled}, S::kCancelled},
    {{S::kStreaming, SE::kCancelled}, S::kCancelled},
    {{S::kPaused, SE::kCancelled}, S::kCancelled},
    {{S::kDeviceStateSent, SE::kCancelled}, S::kCancelled},
    {{S::kImageDigestSent, SE::kCancelled}, S::kCancelled},
    {{S::kImageRepairing, SE::kCancelled}, S::kCancelled},
    {{S::kLiveDigestSent, SE::kCancelled}, S::kCancelled},
};

const std::map<std::pair<D, DE>, D> kDestinationLegal = {
    {{D::kAccepted, DE::kHelloReceived}, D::kHelloReceived},
    {{D::kHelloReceived, DE::kHelloSent}, D::kHelloSent},
    {{D::kHelloSent, DE::kRegionTableReceived}, D::kTableReceived},
    {{D::kTableReceived, DE::kReadySent}, D::kReceiving},
    {{D::kReceiving, DE::kDeviceStateReceived}, D::kDeviceStateReceived},
    {{D::kReceiving, DE::kDigestReceived}, D::kImageDigestReceived},
    {{D::kDeviceStateReceived, DE::kDigestReceived}, D::kLiveDigestReceived},
    {{D::kImageDigestReceived, DE::kCommitSent}, D::kImageCommitted},
    {{D::kLiveDigestReceived, DE::kCommitSent}, D::kLiveCommitted},
    {{D::kLiveDigestReceived, DE::kVerifyMismatchSent}, D::kRepairing},
    {{D::kRepairing, DE::kDigestReceived}, D::kLiveDigestReceived},
    {{D::kImageDigestReceived, DE::kVerifyMismatchSent}, D::kImageRepairing},
    {{D::kImageRepairing, DE::kDigestReceived}, D::kImageDigestReceived},
    {{D::kImageCommitted, DE::kFinished}, D::kDone},
    {{D::kLiveCommitted, DE::kHandOffReceived}, D::kRunning},
    {{D::kLiveCommitted, DE::kSwitchoverAbortReceived}, D::kReceiving},
    {{D::kRunning, DE::kFinished}, D::kDone},
    // Post-copy.
    {{D::kDeviceStateReceived, DE::kPostcopyStartReceived}, D::kPostcopyRunning},
    {{D::kPostcopyRunning, DE::kPostcopyPlacedSent}, D::kPostcopyPlaced},
    {{D::kPostcopyPlaced, DE::kDigestReceived}, D::kPostcopyDigestReceived},
    {{D::kPostcopyDigestReceived, DE::kCommitSent}, D::kPostcopyCommitted},
    {{D::kPostcopyCommitted, DE::kFinished}, D::kDone},
    {{D::kReceiving, DE::kPostcopyDiscardReceived}, D::kReceiving},
    {{D::kReceiving, DE::kPostcopyDiscardedSent}, D::kReceiving},
    // A cancel: until DIGEST arrives; from then on the hand-off decides.
    {{D::kAccepted, DE::kCancelled}, D::kCancelled},
    {{D::kHelloReceived, DE::kCancelled}, D::kCancelled},
    {{D::kHelloSent, DE::kCancelled}, D::kCancelled},
    {{D::kTableReceived, DE::kCancelled}, D::kCancelled},
    {{D::kReceiving, DE::kCancelled}, D::kCancelled},
    {{D::kDeviceStateReceived, DE::kCancelled}, D::kCancelled},
};

const std::set<SE> kSourcePeerEvents = {SE::kHelloReceived,
                                        SE::kReadyReceived,
                                        SE::kMemoryKeysReceived,
                                        SE::kRoundEndReceived,
                                        SE::kCommitReceived,
                                        SE::kByeReceived,
                                        SE::kErrorReceived,
                                        SE::kVerifyMismatchReceived,
                                        SE::kPageRequestReceived,
                                        SE::kPostcopyRunningReceived,
                                        SE::kPostcopyPlacedReceived,
                                        SE::kPostcopyDiscardedReceived,
                                        SE::kSwitchoverAbortedReceived};
const std::set<DE> kDestinationPeerEvents = {
    DE::kHelloReceived,         DE::kRegionTableReceived,     DE::kDeviceStateReceived,
    DE::kDigestReceived,        DE::kHandOffReceived,         DE::kErrorReceived,
    DE::kPostcopyStartReceived, DE::kPostcopyDiscardReceived, DE::kSwitchoverAbortReceived};

template <typename T>
std::vector<T> all(size_t count) {
  std::vector<T> v;
  for (size_t i = 0; i < count; ++i) v.push_back(static_cast<T>(i));
  return v;
}
const auto kSourceStates = all<S>(kSourceStateCount);
const auto kSourceEvents = all<SE>(kSourceEventCount);
const auto kDestinationStates = all<D>(kDestinationStateCount);
const auto kDestinationEvents = all<DE>(kDestinationEventCount);

bool final_state(S s) {
  return s == S::kDone || s == S::kFailed || s == S::kPeerFailed || s == S::kCancelled;
}
bool final_state(D s) {
  return s == D::kDone || s == D::kFailed || s == D::kPeerFailed || s == D::kCancelled;
}

// Every pair: a legal one goes where the table says, a failure ends any state but a final
// one, and everything else is refused with a message that names the event and the state,
// blaming the peer (kProtocol) only for what it sent.
template <typename State, typename Event>
void check_every_pair(const std::vector<State>& states, const std::vector<Event>& events,
                      const std::map<std::pair<State, Event>, State>& legal,
                      const std::set<Event>& peer_events, const char* end) {
  size_t legal_seen = 0;
  for (State s : states) {
    for (Event e : events) {
      SCOPED_TRACE(std::string(state_name(s)) + " + " + event_name(e));
      auto next = next_state(s, e);
      const bool failure = e == Event::kFailure || e == Event::kErrorReceived;
      auto row = legal.find({s, e});
      if (failure && !final_state(s)) {
        ASSERT_TRUE(next.is_ok()) << next.status().message();
        EXPECT_EQ(next.value(), e == Event::kFailure ? State::kFailed : State::kPeerFailed);
      } else if (!failure && row != legal.end()) {
        ASSERT_TRUE(next.is_ok()) << next.status().message();
        EXPECT_EQ(next.value(), row->second);
        ++legal_seen;
      } else {
        ASSERT_FALSE(next.is_ok()) << "went to " << state_name(next.value());
        EXPECT_EQ(next.status().code(),
                  peer_events.count(e) ? ErrorCode::kProtocol : ErrorCode::kInternal);
        const std::string m = next.status().message();
        EXPECT_EQ(m.rfind(std::string(end) + " session: ", 0), 0u) << m;
        EXPECT_NE(m.find(event_name(e)), std::string::npos) << m;
        EXPECT_NE(m.find(std::string("in state ") + state_name(s)), std::string::npos) << m;
      }
    }
  }
  EXPECT_EQ(legal_seen, legal.size());
}

TEST(SessionState, SourceEveryStateAndEventPair) {
  check_every_pair(kSourceStates, kSourceEvents, kSourceLegal, kSourcePeerEvents, "source");
}

TEST(SessionState, DestinationEveryStateAndEventPair) {
  check_every_pair(kDestinationStates, kDestinationEvents, kDestinationLegal,
                   kDestinationPeerEvents, "destination");
}

TEST(SessionState, AnIllegalStepSaysWhereItWouldHaveBeenLegal) {
  auto r = next_state(S::kTableSent, SE::kCommitReceived);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kProtocol);
  EXPECT_EQ(r.status().message(),
            "source session: commit received in state table_sent; legal only in "
            "image_digest_sent, live_digest_sent, aborting_switchover, postcopy_digest_sent");
  auto d = next_state(D::kDeviceStateReceived, DE::kDeviceStateReceived);
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().message(),
            "destination session: device_state received in state device_state_received; "
            "legal only in receiving");
  auto done = next_state(S::kDone, SE::kErrorReceived);
  ASSERT_FALSE(done.is_ok());
  EXPECT_EQ(done.status().message(),
            "source session: error received in state done, which is final");
}

TEST(SessionState, EveryStateAndEventHasItsOwnName) {
  std::set<std::string> names;
  for (S s : kSourceStates) EXPECT_TRUE(names.insert(state_name(s)).second) << state_name(s);
  names.clear();
  for (D s : kDestinationStates) EXPECT_TRUE(names.insert(state_name(s)).second) << state_name(s);
  names.clear();
  for (SE e : kSourceEvents) EXPECT_TRUE(names.insert(event_name(e)).second) << event_name(e);
  names.clear();
  for (DE e : kDestinationEvents) EXPECT_TRUE(names.insert(event_name(e)).second) << event_name(e);
}

// Safety, source: the guest is released only by COMMIT, after DIGEST of a paused guest.
TEST(SessionState, SourceReleasesTheGuestOnlyOnCommit) {
  for (S s : kSourceStates)
    for (SE e : kSourceEvents) {
      auto next = next_state(s, e);
      if (!next || next.value() != S::kReleased || s == S::kReleased) continue;
      EXPECT_EQ(s, S::kLiveDigestSent) << state_name(s) << " + " << event_name(e);
      EXPECT_EQ(e, SE::kCommitReceived) << state_name(s) << " + " << event_name(e);
    }
}

// Safety, source: walks every reachable path from kConnecting, remembering whether it went
// through kReleased; once it has, neither the state nor a failure in it lets the source
// resume the guest. Before the release, a paused guest that fails is resumed.
TEST(SessionState, SourceNeverResumesTheGuestAfterReleasingIt) {
  std::set<std::pair<S, bool>> seen;
  std::vector<std::pair<S, bool>> todo = {{S::kConnecting, false}};
  bool reached_release = false;
  while (!todo.empty()) {
    auto [s, released] = todo.back();
    todo.pop_back();
    if (!seen.insert({s, released}).second) continue;
    released = released || s == S::kReleased;
    reached_release = reached_release || released;
    for (SE e : kSourceEvents) {
      auto next = next_state(s, e);
      if (!next) continue;
      if (released) {
        EXPECT_FALSE(source_may_resume_guest(next.value())) << state_name(next.value());
        EXPECT_FALSE(source_may_resume_guest(s)) << state_name(s);  // what a failure in s sees
      }
      todo.push_back({next.value(), released});
    }
  }
  EXPECT_TRUE(reached_release);
  for (S s : {S::kPaused, S::kDeviceStateSent, S::kLiveDigestSent, S::kRepairing})
    EXPECT_TRUE(source_may_resume_guest(s)) << state_name(s);
  for (S s : {S::kConnecting, S::kStreaming, S::kImageDigestSent, S::kDone})
    EXPECT_FALSE(source_may_resume_guest(s)) << "nothing paused in " << state_name(s);
}

// The run classes decide after a failure by the state it failed in: walk the live path and
// fail at each step.
TEST(SessionState, SourceFailureKeepsTheStateItFailedIn) {
  const std::vector<SE> live = {SE::kHelloSent,        SE::kHelloReceived,    SE::kRegionTableSent,
                                SE::kReadyReceived,    SE::kRoundEndReceived, SE::kGuestPaused,
                                SE::kRoundEndReceived, SE::kDeviceStateSent,  SE::kDigestSent,
                                SE::kCommitReceived,   SE::kHandOffSent};
  for (size_t steps = 0; steps <= live.size(); ++steps) {
    SourceSession session(S::kConnecting);
    for (size_t i = 0; i < steps; ++i) ASSERT_TRUE(session.advance(live[i]).is_ok());
    const S at = session.state();
    const bool paused_not_released = steps >= 6 && steps < 10;
    EXPECT_EQ(source_may_resume_guest(at), paused_not_released) << state_name(at);
    EXPECT_EQ(source_guest_paused(at), steps >= 6) << state_name(at);
    session.fail(SE::kErrorReceived);
    EXPECT_EQ(session.state(), S::kPeerFailed);
    EXPECT_TRUE(session.peer_failed());
    session.fail();  // the local error that follows the peer's changes nothing
    EXPECT_EQ(session.state(), S::kPeerFailed);
    EXPECT_EQ(session.failed_in(), at);
  }
}

// A cancel in the middle of the rounds or the switchover leaves the guest the source's: it
// resumes a guest it had paused, and keeps running one it had not.
TEST(SessionState, SourceCancelledBeforeCommitKeepsTheGuest) {
  for (S s : {S::kStreaming, S::kPaused, S::kDeviceStateSent, S::kLiveDigestSent}) {
    SCOPED_TRACE(state_name(s));
    SourceSession session(s);
    ASSERT_TRUE(session.cancel().is_ok());
    EXPECT_TRUE(session.cancelled());
    EXPECT_TRUE(is_final(session.state()));
    EXPECT_EQ(session.failed_in(), s);
    EXPECT_EQ(source_may_resume_guest(session.failed_in()), source_guest_paused(s));
    session.fail();  // a later failure does not undo the cancel
    EXPECT_TRUE(session.cancelled());
  }
}

// Inside the hand-off window a cancel is refused and the session goes on: the guest may be
// the destination's (source), or the source decides whether it runs here (destination).
TEST(SessionState, ACancelIsHeldInTheHandOffWindow) {
  for (S s : {S::kReleased, S::kHandedOff}) {
    SourceSession session(s);
    Status c = session.cancel();
    EXPECT_FALSE(c.is_ok()) << state_name(s);
    EXPECT_NE(c.message().find("cancel in state"), std::string::npos) << c.message();
    EXPECT_EQ(session.state(), s);
  }
  SourceSession released(S::kReleased);
  ASSERT_TRUE(released.advance(SE::kHandOffSent).is_ok());
  ASSERT_TRUE(released.advance(SE::kByeReceived).is_ok());
  EXPECT_EQ(released.state(), S::kDone);
  for (D s : {D::kImageDigestReceived, D::kLiveDigestReceived, D::kImageCommitted,
              D::kLiveCommitted, D::kRunning}) {
    DestinationSession session(s);
    EXPECT_FALSE(session.cancel().is_ok()) << state_name(s);
    EXPECT_EQ(session.state(), s);
  }
  DestinationSession receiving(D::kReceiving);
  ASSERT_TRUE(receiving.cancel().is_ok());
  EXPECT_FALSE(destination_may_run_guest(receiving.state()));
}

TEST(SessionState, SourceSessionRunsAnImageAndALiveGuestToDone) {
  SourceSession image(S::kConnecting);
  for (SE e : {SE::kHelloSent, SE::kHelloReceived, SE::kRegionTableSent, SE::kMemoryKeysReceived,
               SE::kReadyReceived, SE::kRoundEndReceived, SE::kDigestSent, SE::kCommitReceived})
    ASSERT_TRUE(image.advance(e).is_ok()) << event_name(e);
  EXPECT_EQ(image.state(), S::kDone);
  image.fail();
  EXPECT_EQ(image.state(), S::kDone) << "a finished session stays finished";

  SourceSession live(S::kConnecting);
  for (SE e : {SE::kHelloSent, SE::kHelloReceived, SE::kRegionTableSent, SE::kReadyReceived,
               SE::kRoundEndReceived, SE::kGuestPaused, SE::kRoundEndReceived, SE::kDeviceStateSent,
               SE::kDigestSent, SE::kCommitReceived, SE::kHandOffSent, SE::kByeReceived})
    ASSERT_TRUE(live.advance(e).is_ok()) << event_name(e);
  EXPECT_EQ(live.state(), S::kDone);
}

TEST(SessionState, AnIllegalEventLeavesTheSessionWhereItWas) {
  SourceSession s(S::kConnecting);
  ASSERT_TRUE(s.advance(SE::kHelloSent).is_ok());
  EXPECT_FALSE(s.advance(SE::kCommitReceived).is_ok());
  EXPECT_EQ(s.state(), S::kHelloSent);
  s.fail();
  EXPECT_EQ(s.state(), S::kFailed);
  EXPECT_FALSE(s.peer_failed());
  EXPECT_EQ(s.failed_in(), S::kHelloSent);
}

// Safety, destination: the guest runs only after HANDOFF, which only a committed live guest
// may receive, or after POSTCOPY_START, which only a guest whose device state came may.
TEST(SessionState, DestinationRunsTheGuestOnlyAfterTheHandOff) {
  for (D s : kDestinationStates)
    EXPECT_EQ(destination_may_run_guest(s), s == D::kRunning || destination_in_postcopy(s))
        << state_name(s);
  for (D s : kDestinationStates)
    for (DE e : kDestinationEvents) {
      auto next = next_state(s, e);
      if (!next || !destination_may_run_guest(next.value()) || destination_may_run_guest(s))
        continue;
      if (next.value() == D::kRunning) {
        EXPECT_EQ(s, D::kLiveCommitted) << state_name(s) << " + " << event_name(e);
        EXPECT_EQ(e, DE::kHandOffReceived) << state_name(s) << " + " << event_name(e);
      } else {
        EXPECT_EQ(s, D::kDeviceStateReceived) << state_name(s) << " + " << event_name(e);
        EXPECT_EQ(e, DE::kPostcopyStartReceived) << state_name(s) << " + " << event_name(e);
      }
    }
  DestinationSession d(D::kAccepted);
  for (DE e : {DE::kHelloReceived, DE::kHelloSent, DE::kRegionTableReceived, DE::kReadySent,
               DE::kDeviceStateReceived, DE::kDigestReceived, DE::kCommitSent})
    ASSERT_TRUE(d.advance(e).is_ok()) << event_name(e);
  EXPECT_FALSE(destination_may_run_guest(d.state())) << "committed, not yet handed over";
  ASSERT_TRUE(d.advance(DE::kHandOffReceived).is_ok());
  EXPECT_TRUE(destination_may_run_guest(d.state()));
  ASSERT_TRUE(d.advance(DE::kFinished).is_ok());
  EXPECT_EQ(d.state(), D::kDone);
}

// Safety, post-copy: once POSTCOPY_START is out the guest is the destination's. No path from
// there lets the source resume it, and no cancel is taken on either end (the guest would be
// lost: it runs on the destination and needs the source's pages).
TEST(SessionState, PostcopyNeverResumesTheSourceGuestAndTakesNoCancel) {
  std::set<S> seen;
  std::vector<S> todo = {S::kPostcopyActive};
  while (!todo.empty()) {
    S s = todo.back();
    todo.pop_back();
    if (!seen.insert(s).second) continue;
    EXPECT_FALSE(source_may_resume_guest(s)) << state_name(s);
    EXPECT_TRUE(source_guest_paused(s) || s == S::kDone || s == S::kFailed || s == S::kPeerFailed)
        << state_name(s);
    EXPECT_FALSE(next_state(s, SE::kCancelled).is_ok()) << state_name(s);
    for (SE e : kSourceEvents)
      if (auto next = next_state(s, e)) todo.push_back(next.value());
  }
  EXPECT_TRUE(seen.count(S::kDone));
  for (D s : {D::kPostcopyRunning, D::kPostcopyPlaced, D::kPostcopyDigestReceived,
              D::kPostcopyCommitted}) {
    DestinationSession session(s);
    EXPECT_FALSE(session.cancel().is_ok()) << state_name(s);
  }
  SourceSession source(S::kConnecting);
  for (SE e : {SE::kHelloSent, SE::kHelloReceived, SE::kRegionTableSent, SE::kReadyReceived,
               SE::kGuestPaused, SE::kDeviceStateSent, SE::kPostcopyStartSent,
               SE::kPostcopyRunningReceived, SE::kPageRequestReceived, SE::kPostcopyPlacedReceived,
               SE::kPageRequestReceived, SE::kDigestSent, SE::kCommitReceived})
    ASSERT_TRUE(source.advance(e).is_ok()) << event_name(e) << " in " << state_name(source.state());
  EXPECT_EQ(source.state(), S::kDone);
  DestinationSession dest(D::kAccepted);
  for (DE e : {DE::kHelloReceived, DE::kHelloSent, DE::kRegionTableReceived, DE::kReadySent,
               DE::kDeviceStateReceived, DE::kPostcopyStartReceived, DE::kPostcopyPlacedSent,
               DE::kDigestReceived, DE::kCommitSent, DE::kFinished})
    ASSERT_TRUE(dest.advance(e).is_ok()) << event_name(e) << " in " << state_name(dest.state());
  EXPECT_EQ(dest.state(), D::kDone);
}

// A hybrid's discards come while the source's guest still runs, never once it is paused.
TEST(SessionState, DiscardsOnlyBeforeThePause) {
  SourceSession source(S::kConnecting);
  for (SE e : {SE::kHelloSent, SE::kHelloReceived, SE::kRegionTableSent, SE::kReadyReceived,
               SE::kRoundEndReceived, SE::kPostcopyDiscardSent, SE::kPostcopyDiscardedReceived,
               SE::kPostcopyDiscardSent, SE::kPostcopyDiscardedReceived, SE::kGuestPaused,
               SE::kDeviceStateSent, SE::kPostcopyStartSent})
    ASSERT_TRUE(source.advance(e).is_ok()) << event_name(e) << " in " << state_name(source.state());
  for (S s : {S::kPaused, S::kDeviceStateSent, S::kPostcopyActive})
    EXPECT_FALSE(next_state(s, SE::kPostcopyDiscardedReceived).is_ok()) << state_name(s);
  EXPECT_EQ(next_state(S::kPaused, SE::kPostcopyDiscardedReceived).status().code(),
            ErrorCode::kProtocol);
  DestinationSession dest(D::kAccepted);
  for (DE e : {DE::kHelloReceived, DE::kHelloSent, DE::kRegionTableReceived, DE::kReadySent,
               DE::kPostcopyDiscardReceived, DE::kPostcopyDiscardedSent, DE::kDeviceStateReceived,
               DE::kPostcopyStartReceived})
    ASSERT_TRUE(dest.advance(e).is_ok()) << event_name(e) << " in " << state_name(dest.state());
  for (D s : {D::kDeviceStateReceived, D::kPostcopyRunning, D::kLiveDigestReceived})
    EXPECT_FALSE(next_state(s, DE::kPostcopyDiscardReceived).is_ok()) << state_name(s);
  EXPECT_EQ(source_sent_event(wire::FrameType::kPostcopyDiscard), SE::kPostcopyDiscardSent);
  EXPECT_EQ(source_received_event(wire::FrameType::kPostcopyDiscarded),
            SE::kPostcopyDiscardedReceived);
}

TEST(SessionState, SourceFramesMapToTheirEvents) {
  using wire::FrameType;
  EXPECT_EQ(source_sent_event(FrameType::kHello), SE::kHelloSent);
  EXPECT_EQ(source_sent_event(FrameType::kRegionTable), SE::kRegionTableSent);
  EXPECT_EQ(source_sent_event(FrameType::kDeviceState), SE::kDeviceStateSent);
  EXPECT_EQ(source_sent_event(FrameType::kDigest), SE::kDigestSent);
  EXPECT_EQ(source_sent_event(FrameType::kHandOff), SE::kHandOffSent);
  EXPECT_EQ(source_sent_event(FrameType::kBye), std::nullopt) << "a courtesy after an image";
  EXPECT_EQ(source_received_event(FrameType::kHello), SE::kHelloReceived);
  EXPECT_EQ(source_received_event(FrameType::kReady), SE::kReadyReceived);
  EXPECT_EQ(source_received_event(FrameType::kMemoryKeys), SE::kMemoryKeysReceived);
  EXPECT_EQ(source_received_event(FrameType::kRoundEnd), SE::kRoundEndReceived);
  EXPECT_EQ(source_received_event(FrameType::kCommit), SE::kCommitReceived);
  EXPECT_EQ(source_received_event(FrameType::kBye), SE::kByeReceived);
  EXPECT_EQ(source_received_event(FrameType::kError), SE::kErrorReceived);
  EXPECT_EQ(source_received_event(FrameType::kDigest), std::nullopt);
  EXPECT_EQ(source_sent_event(FrameType::kPostcopyStart), SE::kPostcopyStartSent);
  EXPECT_EQ(source_received_event(FrameType::kPageRequest), SE::kPageRequestReceived);
  EXPECT_EQ(source_received_event(FrameType::kPostcopyRunning), SE::kPostcopyRunningReceived);
  EXPECT_EQ(source_received_event(FrameType::kPostcopyPlaced), SE::kPostcopyPlacedReceived);
  EXPECT_EQ(source_sent_event(FrameType::kSwitchoverAbort), SE::kSwitchoverAbortSent);
  EXPECT_EQ(source_received_event(FrameType::kSwitchoverAborted), SE::kSwitchoverAbortedReceived);
}

// A verdict that ran late (switchover.h): the source takes its guest back without ever
// releasing it, drops a COMMIT that crossed the abort, can no longer hand the guest over,
// and pauses again later; the destination drops its committed copy, never having run it,
// and a later switch-over runs it as usual.
TEST(SessionState, AnAbortedSwitchoverNeverReleasesNorRunsTheGuestAndRoundsGoOn) {
  SourceSession src(S::kLiveDigestSent);
  EXPECT_FALSE(next_state(S::kLiveDigestSent, SE::kSwitchoverAbortSent).is_ok())
      << "the guest runs again before the abort is sent";
  ASSERT_TRUE(src.advance(SE::kGuestResumed).is_ok());
  for (S taken_back : {S::kTakenBack, S::kAbortingSwitchover}) {
    EXPECT_FALSE(source_guest_paused(taken_back)) << state_name(taken_back);
    EXPECT_FALSE(source_may_resume_guest(taken_back)) << "it runs already, never resumed twice";
  }
  EXPECT_FALSE(next_state(S::kTakenBack, SE::kCommitReceived).is_ok());
  ASSERT_TRUE(src.advance(SE::kSwitchoverAbortSent).is_ok());
  ASSERT_TRUE(src.advance(SE::kCommitReceived).is_ok());
  EXPECT_EQ(src.state(), S::kAbortingSwitchover) << "a crossed COMMIT releases nothing";
  EXPECT_FALSE(next_state(S::kAbortingSwitchover, SE::kHandOffSent).is_ok());
  for (SE e : {SE::kSwitchoverAbortedReceived, SE::kRoundEndReceived, SE::kGuestPaused,
               SE::kDeviceStateSent, SE::kDigestSent, SE::kCommitReceived, SE::kHandOffSent})
    ASSERT_TRUE(src.advance(e).is_ok()) << event_name(e) << " in " << state_name(src.state());
  EXPECT_EQ(src.state(), S::kHandedOff);

  DestinationSession dst(D::kLiveCommitted);
  ASSERT_TRUE(dst.advance(DE::kSwitchoverAbortReceived).is_ok());
  EXPECT_EQ(dst.state(), D::kReceiving);
  EXPECT_FALSE(next_state(D::kReceiving, DE::kHandOffReceived).is_ok());
  for (DE e :
       {DE::kDeviceStateReceived, DE::kDigestReceived, DE::kCommitSent, DE::kHandOffReceived})
    ASSERT_TRUE(dst.advance(e).is_ok()) << event_name(e) << " in " << state_name(dst.state());
  EXPECT_TRUE(destination_may_run_guest(dst.state()));
  EXPECT_FALSE(next_state(D::kRunning, DE::kSwitchoverAbortReceived).is_ok())
      << "after HANDOFF the guest is the destination's";
}

// "table_sent" -> "kTableSent": the enum's spelling, which docs/protocol.md uses.
std::string enum_spelling(const std::string& name) {
  std::string out = "k";
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

TEST(SessionState, TheProtocolDocNamesEveryState) {
  std::ifstream in(RAMSHIFT_PROTOCOL_DOC);
  ASSERT_TRUE(in) << RAMSHIFT_PROTOCOL_DOC;
  std::stringstream doc;
  doc << in.rdbuf();
  for (S s : kSourceStates)
    EXPECT_NE(doc.str().find(enum_spelling(state_name(s))), std::string::npos)
        << enum_spelling(state_name(s));
  for (D s : kDestinationStates)
    EXPECT_NE(doc.str().find(enum_spelling(state_name(s))), std::string::npos)
        << enum_spelling(state_name(s));
}

}  // namespace
}  // namespace ramshift::migration
