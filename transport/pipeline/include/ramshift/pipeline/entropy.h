// A page that zstd would not shrink, told from a sample of its bytes before any compressor
// runs (the idea of btrfs's compression heuristic): 512 bytes at an even stride, and the
// number of distinct values among them. Uniform random bytes show about 221 of 256; text,
// code and structures show far fewer. Costs an eighth of a pass over the page.
#pragma once

#include <cstddef>

namespace ramshift::pipeline {

// True when the page's sampled bytes take so many distinct values that compressing it
// would spend CPU for (almost) nothing. `len` is a page size (a multiple of 512).
bool looks_incompressible(const std::byte* page, size_t len);

}  // namespace ramshift::pipeline
