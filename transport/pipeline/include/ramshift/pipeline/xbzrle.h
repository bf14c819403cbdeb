// XBZRLE: XOR-based zero-run-length delta of a page against an older version of it.
//
// Encoding (same idea as QEMU's, our own bytes): a sequence of pairs
//     uleb128 unchanged_run, uleb128 changed_run (>= 1), changed_run bytes of the new page
// covering the page from its start; a trailing unchanged run is not written. An empty delta
// means "unchanged". Both runs of a pair together never pass the end of the page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ramshift/base/status.h"

namespace ramshift::pipeline::xbzrle {

// Encodes `new_page` against `old_page` (same length) into `out`. Returns the delta length,
// or -1 when the delta would not fit in `out` (the caller then sends the page raw; pass an
// `out` shorter than the page to insist on a saving). Never reads or writes out of bounds.
int64_t encode(const std::byte* old_page, const std::byte* new_page, size_t page_size,
               std::span<std::byte> out);

// Applies `delta` onto `page` (which holds the old version on entry, the new one on return).
// Every run is checked against the page size; a malformed delta returns kCorrupt naming the
// fault and leaves `page` partly updated (the caller discards it).
Status decode(std::span<const std::byte> delta, std::span<std::byte> page);

}  // namespace ramshift::pipeline::xbzrle
