// Pieces shared by the segment writer, reader and tools: the index and footer codecs, the
// record syntax check and the gram filter builder. Not a public interface; see
// segment_format.h for the format they implement.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/ulid.h"
#include "segments/segment_file.h"
#include "segments/segment_format.h"

namespace oklog::segment_internal {

inline void PutFixed32(std::string* dst, uint32_t v) { dst->append(reinterpret_cast<const char*>(&v), 4); }
inline void PutFixed64(std::string* dst, uint64_t v) { dst->append(reinterpret_cast<const char*>(&v), 8); }
inline uint32_t GetFixed32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t GetFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void PutVarint(std::string* dst, uint64_t v);

struct Footer {
  uint64_t index_offset = 0;
  uint32_t index_size = 0;
  uint32_t index_crc32c = 0;
  uint32_t version = segment_format::kFormatVersion;
};
// Appends the skippable frame header that precedes an index of index_size bytes.
void EncodeIndexFrameHeader(uint32_t index_size, std::string* dst);
void EncodeFooter(const Footer& f, std::string* dst);
// Checks the last kFooterSize bytes of a file of file_size bytes: magic, footer crc, version,
// and that the index lies where the footer says. Corruption otherwise.
Status DecodeFooter(const char* footer, uint64_t file_size, Footer* f);

// A block's index entry as the writer holds it until Finish (topic ids into its own table).
struct PendingBlock {
  uint32_t compressed_size = 0;
  uint32_t raw_size = 0;
  uint32_t records = 0;
  uint32_t crc32c = 0;
  Ulid first, last;
  uint32_t flags = 0;
  std::vector<uint32_t> topic_ids;  // sorted, into the topic table given to EncodeIndex
  std::string filter;
};
// topics: sorted, distinct. Appends the index payload to *dst.
void EncodeIndex(const std::vector<std::string>& topics, const std::vector<PendingBlock>& blocks,
                 std::string* dst);
// Decodes an index whose blocks must exactly fill [0, blocks_end) of the file. Every count
// and size is bounded; Corruption (never an exception) for anything malformed.
Status DecodeIndex(std::string_view index, uint64_t blocks_end, std::vector<BlockInfo>* blocks);

// Canonical ULID text: 26 characters of 0-9 A-Z minus I L O U, first one <= '7'.
bool IsCanonicalUlid(const char* p);

// Record syntax "ULID SP topic SP line LF" with exactly one LF. On success *topic is the topic.
bool ParseRecord(std::string_view rec, std::string_view* topic);

// Builds one block's gram filter: Reset, AddPayload per record, then Finish.
class GramFilterBuilder {
 public:
  // payload_bytes: about how many payload bytes the block will hold (sizes the work bitmap).
  void Reset(size_t payload_bytes);
  void AddPayload(const char* p, size_t n);
  // Chooses the filter size for a block compressed to compressed_bytes and writes the filter
  // (possibly empty) to *out. Returns the estimated number of distinct grams.
  double Finish(size_t compressed_bytes, std::string* out);

 private:
  std::vector<uint64_t> bits_;  // work bitmap of 2^log2_bits_ bits, bit = hash >> (32 - log2_bits_)
  unsigned log2_bits_ = 0;
  size_t set_ = 0;              // bits set in bits_
  std::vector<uint64_t> filter_;
};

// Each gram hash of the payload: calls f(hash) for every 4-byte window (duplicates included).
template <typename F>
void ForEachGramHash(const char* p, size_t n, F&& f) {
  for (size_t i = 0; i + segment_format::kGramBytes <= n; ++i) {
    uint32_t g = 0;
    for (size_t k = 0; k < segment_format::kGramBytes; ++k)
      g |= uint32_t{segment_format::LowerAscii(static_cast<uint8_t>(p[i + k]))} << (8 * k);
    f(segment_format::GramHash(g));
  }
}

inline uint64_t FilterBit(uint32_t hash, uint64_t filter_bits) { return (uint64_t{hash} * filter_bits) >> 32; }

inline bool FilterHasBit(std::string_view filter, uint32_t hash) {
  const uint64_t bit = FilterBit(hash, filter.size() * 8);
  return (static_cast<uint8_t>(filter[bit >> 3]) >> (bit & 7)) & 1;
}

}  // namespace oklog::segment_internal
