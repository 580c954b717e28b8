// Test helpers for in-memory segment files (SegmentEncoder, CheckSegmentImage): encoding a list
// of records, and re-assembling a checked file's blocks into a file whose checksums are all
// valid but whose content is wrong, as a buggy or hostile peer could send it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "segments/crc32c.h"
#include "segments/segment_file.h"
#include "segments/segment_file_internal.h"

namespace oklog::testing_image {

inline SegmentImage Encode(const std::vector<std::string>& records, SegmentWriterOptions options = {}) {
  auto enc = SegmentEncoder::Create(options);
  EXPECT_TRUE(enc.ok());
  for (const auto& r : records) EXPECT_TRUE((*enc)->Append(r).ok()) << r;
  auto image = (*enc)->Finish();
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  return std::move(image).value();
}

// The blocks of `file` (described by `info`) in `order`, under a freshly encoded index, index
// checksum and footer. swap_range: each block entry claims [last, first] instead of
// [first, last].
inline std::string Reassemble(std::string_view file, const SegmentImageInfo& info, const std::vector<size_t>& order,
                              bool swap_range = false) {
  using namespace segment_internal;
  std::vector<std::string> topics;
  for (const auto& b : info.blocks) topics.insert(topics.end(), b.topics.begin(), b.topics.end());
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  std::string out;
  std::vector<PendingBlock> entries;
  for (size_t i : order) {
    const BlockInfo& b = info.blocks[i];
    out.append(file.substr(b.offset, b.compressed_size));
    PendingBlock p;
    p.compressed_size = b.compressed_size;
    p.raw_size = b.raw_size;
    p.records = b.records;
    p.crc32c = b.crc32c;
    p.first = swap_range ? b.last : b.first;
    p.last = swap_range ? b.first : b.last;
    p.flags = b.topics_complete ? 0 : segment_format::kBlockTopicsIncomplete;
    for (const auto& t : b.topics)
      p.topic_ids.push_back(static_cast<uint32_t>(std::lower_bound(topics.begin(), topics.end(), t) - topics.begin()));
    p.filter = b.filter;
    entries.push_back(std::move(p));
  }
  std::string index;
  EncodeIndex(topics, entries, &index);
  Footer f;
  f.index_offset = out.size() + segment_format::kSkippableHeaderSize;
  f.index_size = static_cast<uint32_t>(index.size());
  f.index_crc32c = crc32c::Value(index.data(), index.size());
  EncodeIndexFrameHeader(f.index_size, &out);
  out += index;
  EncodeFooter(f, &out);
  return out;
}

}  // namespace oklog::testing_image
