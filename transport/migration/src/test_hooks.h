// Test knobs, never for production, read from the environment (each logs a warning when set).
//
// RAMSHIFT_TEST_HOLD_AT=PHASE[:SECONDS[:TIMES]] in a process's
// environment makes its migration stop for SECONDS (default 3) when it reaches PHASE (the first
// TIMES times only, if given), after
// logging "test: holding at PHASE", so a test can kill a process, cut the link or deliver a
// signal at that named moment instead of guessing it by time. The phases:
//   source-setup        the destination's HELLO checked, before the region table
//   source-switchover   the guest just paused, before its final round
//   source-paused-round queue 0's thread, in a round sent with the guest paused: a final
//                       round whose pages run late (the switch-over guard's case)
//   source-handoff      COMMIT received (the guest is the destination's), before HANDOFF
//   destination-setup   memory mapped, before READY
//   destination-check   the digest matched, output renamed, guest adopted, before COMMIT: a
//                       verdict that runs late (the guard's second stage)
//   destination-handoff COMMIT sent, before waiting for HANDOFF
//
// RAMSHIFT_TEST_PROTOCOL_VERSION=N makes this end's HELLO announce protocol N..N, as a peer
// of another version would, so the refusal on both ends can be tested between two processes.
#pragma once

#include <string_view>

#include "ramshift/wire/frame.h"

namespace ramshift::migration {

inline constexpr const char* kTestHoldAtEnv = "RAMSHIFT_TEST_HOLD_AT";

// Holds here if RAMSHIFT_TEST_HOLD_AT names `phase`; returns at once otherwise.
void test_hold(std::string_view phase);

inline constexpr const char* kTestProtocolVersionEnv = "RAMSHIFT_TEST_PROTOCOL_VERSION";

// `hello` as this end announces it: unchanged unless RAMSHIFT_TEST_PROTOCOL_VERSION is set.
wire::Hello test_protocol_version(wire::Hello hello);

}  // namespace ramshift::migration
