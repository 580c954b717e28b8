// The store segment file format (`LOW-HIGH.seg`), version 1. Written by SegmentWriter, read by
// SegmentReader (segment_file.h). All integers little-endian; varint = LEB128 (unsigned, at most
// 5 bytes for a u32, 10 for a u64).
//
//   file         := block* index_frame
//   block        := LZ4 frame                 ; standard frame (magic 0x184D2204), independent
//                                             ; blocks, content size set, no checksums; holds
//                                             ; complete records only
//   record       := ULID SP topic SP line LF  ; ULID: 26 canonical Crockford base32 characters,
//                                             ; strictly increasing through the file; topic:
//                                             ; 1+ bytes, no SP or LF; line: any bytes but LF
//   index_frame  := u32 kIndexFrameMagic      ; an LZ4 *skippable* frame, ignored by `lz4 -d`
//                   u32 frame_size            ; = index_size + kFooterSize
//                   index                     ; index_size bytes
//                   footer                    ; kFooterSize bytes, the last bytes of the file
//   footer       := u64 index_offset          ; file offset of `index` (= blocks' bytes + 8)
//                   u32 index_size
//                   u32 index_crc32c          ; crc32c of the index bytes
//                   u32 version               ; kFormatVersion
//                   u32 footer_crc32c         ; crc32c of the 20 footer bytes before it
//                   u64 kFooterMagic
//   index        := varint block_count        ; 1..kMaxBlocks
//                   varint topic_count        ; 0..kMaxSegmentTopics: the segment's topic table
//                   (varint len, len bytes){topic_count}   ; sorted, distinct, 1..kMaxTopicBytes
//                   block_entry{block_count}
//   block_entry  := varint compressed_size    ; bytes of the block's frame; blocks are
//                                             ; contiguous from offset 0, so offsets are implied
//                   varint raw_size           ; record text bytes, 1..kMaxBlockRawBytes
//                   varint records            ; >= 1
//                   u32 crc32c                ; of the compressed frame bytes
//                   16 bytes first ULID, 16 bytes last ULID   ; binary, big-endian
//                   varint flags              ; kBlockTopicsIncomplete
//                   varint topic_count        ; 0..kMaxTopicsPerBlock
//                   varint topic_id{topic_count}   ; indexes into the topic table, increasing
//                   varint filter_size        ; 0, or a multiple of 8 <= kMaxFilterBytes
//                   filter_size bytes         ; the gram filter (below)
//
// Damage is always attributable: a block's bytes are covered by its entry's crc32c, the index
// by footer.index_crc32c and the footer by footer_crc32c and its magic. So a reader marks a
// block whose bytes fail as bad and keeps the rest of the file (store_log.h), and only a failed
// footer or index (no trusted map of the blocks) condemns the whole file.
//
// Gram filter: a bitmap of m = 8 * filter_size bits, one hash function. For each record, every
// 4 bytes window of its payload (the bytes after "ULID SP", the trailing LF included), ASCII
// letters lower-cased, is hashed with GramHash(); bit (hash * m) >> 32 is set (bit b is
// filter[b / 8] >> (b % 8) & 1). An empty filter means "may contain anything". The writer
// may set more bits than that (never fewer): a reader only relies on "bit clear => absent".
// Sizes are any multiple of 8 bytes, not powers of two: on diverse logs the filter is capped
// by its share of the block's bytes, and rounding down to a power of two wasted up to half of
// that share (6 % instead of 0.3 % false positives for a 16-hex needle, see tools/bench/segbench).
#pragma once

#include <cstddef>
#include <cstdint>

namespace oklog::segment_format {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kLz4FrameMagic = 0x184D2204;
inline constexpr uint32_t kIndexFrameMagic = 0x184D2A5E;  // one of 0x184D2A50..5F (skippable)
inline constexpr uint64_t kFooterMagic = 0x31474553474F4B4Full;  // "OKOGSEG1" read as LE bytes
inline constexpr size_t kSkippableHeaderSize = 8;
inline constexpr size_t kFooterSize = 8 + 4 + 4 + 4 + 4 + 8;
inline constexpr size_t kFooterCrcCoveredBytes = 20;

inline constexpr size_t kUlidTextSize = 26;
inline constexpr size_t kMinRecordBytes = kUlidTextSize + 1 + 1 + 1 + 1;  // "ULID t \n"
inline constexpr size_t kMaxRecordBytes = size_t{64} << 20;
inline constexpr size_t kMinBlockTargetBytes = size_t{4} << 10;
inline constexpr size_t kMaxBlockTargetBytes = size_t{16} << 20;
// A block is at most the target, or one record larger than the target.
inline constexpr size_t kMaxBlockRawBytes = kMaxRecordBytes;
// LZ4 frame: header <= 19, per 64 KiB..4 MiB block a 4-byte size, end mark 4; LZ4's own
// worst-case expansion is n/255 + 16 per block.
inline constexpr size_t kMinBlockFrameBytes = 7 + 4;
inline constexpr size_t kMaxBlockFrameBytes =
    kMaxBlockRawBytes + kMaxBlockRawBytes / 255 + (kMaxBlockRawBytes / (64 << 10) + 1) * 20 + 64;

inline constexpr size_t kMaxBlocks = size_t{1} << 20;
inline constexpr size_t kMaxTopicBytes = 256;
inline constexpr size_t kMaxTopicsPerBlock = 1024;
inline constexpr size_t kMaxSegmentTopics = size_t{1} << 16;
inline constexpr size_t kMaxFilterBytes = size_t{1} << 20;
inline constexpr size_t kMaxIndexBytes = size_t{256} << 20;
inline constexpr uint32_t kBlockTopicsIncomplete = 1;  // the block holds topics not listed

// Smallest encoding of a block entry: 3 one-byte varints, crc, 2 ULIDs, flags, 0 topics,
// filter size 0.
inline constexpr size_t kMinBlockEntryBytes = 3 + 4 + 32 + 1 + 1 + 1;

inline constexpr size_t kGramBytes = 4;
// Filter sizing (tuned on the Appendix A corpus, see tools/bench/segbench): about 1.5 bits per
// distinct gram, at most kMaxFilterPerMille of the block's compressed size, and none when it
// would be fuller than kMaxFilterFill (too diverse to prune anything).
inline constexpr double kFilterBitsPerGram = 1.5;
inline constexpr size_t kMaxFilterPerMille = 40;
inline constexpr double kMaxFilterFill = 0.80;
inline constexpr size_t kFilterGranuleBytes = 8;
inline constexpr size_t kMinFilterBytes = kFilterGranuleBytes;

static_assert(kFooterSize == 32, "footer layout");
static_assert(kFooterCrcCoveredBytes == 8 + 4 + 4 + 4, "footer crc covers offset, size, crc, version");
static_assert(kMinBlockTargetBytes <= kMaxBlockTargetBytes && kMaxBlockTargetBytes <= kMaxBlockRawBytes);
static_assert(kMaxRecordBytes <= kMaxBlockRawBytes, "a record always fits in a block");
static_assert(kMaxBlockFrameBytes < (size_t{1} << 31), "frame sizes fit a u32 and an int");
static_assert(kMaxBlocks * kMinBlockEntryBytes <= kMaxIndexBytes, "a full block count fits the index");
static_assert(kMaxSegmentTopics * (kMaxTopicBytes + 2) <= kMaxIndexBytes / 4, "topic table bounded");
static_assert(kMaxTopicsPerBlock <= kMaxSegmentTopics);
static_assert((kMaxFilterBytes & (kMaxFilterBytes - 1)) == 0, "the work bitmap is a power of two");
static_assert(kMaxFilterBytes % kFilterGranuleBytes == 0);
static_assert(kMaxFilterBytes * 8 <= (size_t{1} << 32), "bit indexes come from a 32-bit hash");
static_assert(kMaxIndexBytes + kFooterSize < (size_t{1} << 32), "frame_size is a u32");

// The gram hash: a 32-bit multiplicative hash of the 4 lower-cased bytes read as a
// little-endian u32 (top half of a 64-bit product, whose low bits depend on every input bit).
inline uint32_t GramHash(uint32_t gram) {
  return static_cast<uint32_t>((uint64_t{gram} * 0x9E3779B97F4A7C15ull) >> 32);
}

// ASCII lower-casing of 8 bytes at once; other bytes (including >= 0x80) are unchanged.
inline uint64_t LowerAscii8(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  const uint64_t high = x & (0x80 * kOnes);            // bytes >= 0x80 are never letters
  const uint64_t low7 = x & (0x7F * kOnes);
  const uint64_t ge_a = (low7 + (0x80 - 'A') * kOnes);   // bit 7 set iff byte >= 'A'
  const uint64_t gt_z = (low7 + (0x80 - 'Z' - 1) * kOnes);  // bit 7 set iff byte > 'Z'
  const uint64_t is_upper = (ge_a & ~gt_z) & ~high & (0x80 * kOnes);
  return x | (is_upper >> 2);
}

inline uint8_t LowerAscii(uint8_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

}  // namespace oklog::segment_format
