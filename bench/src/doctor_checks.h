// The doctor's checks that live in their own files (doctor.cc runs them all).
#pragma once

#include <vector>

#include "ramshift/bench/doctor.h"

namespace ramshift::bench {

// net.tcp_buffers, and with a peer net.route and net.link (doctor_network.cc).
void check_network(std::vector<Check>& out, const DoctorOptions& options);

}  // namespace ramshift::bench
