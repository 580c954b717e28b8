// Store segment files: `LOW-HIGH.seg`, where LOW and HIGH are the ULIDs of the first and last
// record. Format (details and constants in segment_format.h):
//
//   file   := block* index_frame
//   block  := one standard LZ4 frame holding complete records, ~256 KiB of text
//   record := ULID SP topic SP line LF          (sorted by ULID, no duplicate ULIDs)
//   index_frame := LZ4 skippable frame { index payload, footer }
//
// so `lz4 -dc X.seg` prints exactly the stored record lines. The index gives, per block, its
// file offset and sizes, record count, first/last ULID, a checksum of the compressed bytes, the
// set of topics, and a filter of the block's text that lets a query skip blocks that cannot
// match. SegmentWriter and SegmentReader are thread-compatible: one thread at a time per
// object; distinct readers of one file may run on different threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs/env.h"
#include "common/status.h"
#include "common/ulid.h"

namespace oklog {

struct SegmentName {
  Ulid low, high;
  // "LOW-HIGH.seg"
  std::string FileName() const;
  // Parses "LOW-HIGH.seg"; nullopt for anything else.
  static std::optional<SegmentName> Parse(std::string_view file_name);
};

// What a query needs to decide that a block cannot hold a match: for a substring it must
// contain, the filter keys of that substring; for topics, the topic names.
class BlockFilterQuery {
 public:
  // Nothing known: every block may match.
  BlockFilterQuery() = default;
  // Adds a literal that every matching record contains (a substring query's term, or a
  // literal a regex requires). Literals shorter than the filter's gram size add nothing.
  // Grams are ASCII-lower-cased on both sides, so a case-insensitive literal may be given too.
  void RequireLiteral(std::string_view literal);
  // Restricts to records whose topic is one of these (empty: any topic).
  void SetTopics(std::vector<std::string> topics) { topics_ = std::move(topics); }
  const std::vector<uint32_t>& gram_hashes() const { return hashes_; }
  const std::vector<std::string>& topics() const { return topics_; }
  bool empty() const { return hashes_.empty() && topics_.empty(); }

 private:
  std::vector<uint32_t> hashes_;
  std::vector<std::string> topics_;
};

struct BlockInfo {
  uint64_t offset = 0;           // of the block's LZ4 frame in the file
  uint32_t compressed_size = 0;  // bytes of the frame
  uint32_t raw_size = 0;         // bytes of record text
  uint32_t records = 0;
  uint32_t crc32c = 0;           // of the compressed frame bytes
  Ulid first, last;
  std::vector<std::string> topics;  // distinct topics, sorted
  // False when the block also holds topics not listed (more than the format keeps per block,
  // or too long): topic pruning cannot exclude such a block.
  bool topics_complete = true;
  std::string filter;               // gram bitmap; empty means "may contain anything"
};

struct SegmentWriterOptions {
  size_t block_target_bytes = 256 * 1024;
  int lz4_acceleration = 1;
};

class SegmentWriter {
 public:
  // Writes into dir under a temporary name (starting with '.' and ending in ".tmp"), removed by
  // Abandon, by a failed Finish, or by the destructor of an unfinished writer. InvalidArgument
  // for options out of range (block_target_bytes 4 KiB..16 MiB, acceleration 1..65537).
  // Every file operation goes through env, which must outlive the writer.
  static Result<std::unique_ptr<SegmentWriter>> Create(const std::string& dir, SegmentWriterOptions options,
                                                       Env* env = Env::Default());
  virtual ~SegmentWriter() = default;
  // Appends one record: "ULID SP topic SP line LF" (the trailing LF included). Records must come
  // in strictly increasing ULID order: InvalidArgument otherwise (and the record is not written).
  // Also InvalidArgument for a record that is not of that form (canonical upper-case ULID,
  // non-empty topic, exactly one LF, at the end) or longer than 64 MiB; ResourceExhausted when
  // the segment holds the format's maximum number of blocks (Finish it and start another).
  // After an IOError every later call fails.
  virtual Status Append(std::string_view record) = 0;
  virtual uint64_t records() const = 0;
  virtual uint64_t raw_bytes() const = 0;      // record text appended so far
  virtual uint64_t written_bytes() const = 0;  // compressed bytes written so far
  // Writes the last block, the index and the footer, fsyncs, renames to dir/LOW-HIGH.seg and
  // fsyncs the directory. Returns the final path. With no records, NotFound and nothing stays.
  // AlreadyExists when a segment with the same name exists (the temporary file is removed).
  virtual Result<std::string> Finish() = 0;
  // Deletes the temporary file. Safe to call after a failed Finish.
  virtual void Abandon() = 0;
};

// A whole segment file in memory: byte for byte what SegmentWriter would write to disk.
struct SegmentImage {
  SegmentName name;  // LOW-HIGH of its records
  uint64_t records = 0;
  std::string bytes;
};

// Encodes records into a SegmentImage, once, for every replica (segment.replicate_file).
// Append has SegmentWriter::Append's rules and errors; Finish returns the image (NotFound with
// no records) and spends the encoder. raw_bytes_hint: about how many record bytes will come.
class SegmentEncoder {
 public:
  static Result<std::unique_ptr<SegmentEncoder>> Create(SegmentWriterOptions options, uint64_t raw_bytes_hint = 0);
  virtual ~SegmentEncoder() = default;
  virtual Status Append(std::string_view record) = 0;
  virtual uint64_t records() const = 0;
  virtual uint64_t raw_bytes() const = 0;
  virtual Result<SegmentImage> Finish() = 0;
};

struct SegmentImageInfo {
  SegmentName name;  // first block's first ULID, last block's last
  uint64_t records = 0;
  std::vector<BlockInfo> blocks;  // offsets into the checked bytes
};
// Checks segment file bytes from elsewhere without decompressing them: footer (magic, checksum,
// version, size), index frame and checksum, the index (sizes, blocks filling the file, ULID
// ranges in order), and every block's checksum and LZ4 frame header. Corruption with the reason
// otherwise; never reads outside `file`. Record syntax is left to SegmentReader::Verify.
Result<SegmentImageInfo> CheckSegmentImage(std::string_view file);

// Installs segment file bytes as dir/NAME.seg crash-safely: a temporary file (as SegmentWriter's),
// fdatasync, rename that never replaces, fsync of dir. Returns the final path; AlreadyExists
// (nothing written) when dir/NAME.seg exists. Does not check the bytes. Blocking.
Result<std::string> WriteSegmentImage(const std::string& dir, std::string_view file, const SegmentName& name,
                                      Env* env = Env::Default());

class SegmentReader {
 public:
  // Opens and checks the structure: footer magic and version, index checksum, every block
  // within the file, block ULID ranges ordered. Corruption (with the reason) otherwise.
  // Reads through env, which must outlive the reader.
  static Result<std::unique_ptr<SegmentReader>> Open(const std::string& path, Env* env = Env::Default());
  virtual ~SegmentReader() = default;
  virtual const std::string& path() const = 0;
  virtual const std::vector<BlockInfo>& blocks() const = 0;
  virtual Ulid low() const = 0;
  virtual Ulid high() const = 0;
  virtual uint64_t records() const = 0;
  virtual uint64_t raw_bytes() const = 0;   // uncompressed record text
  virtual uint64_t file_bytes() const = 0;  // size on disk
  // False when the block's filter proves no record can match q (a filter never causes a miss).
  virtual bool BlockMayMatch(size_t block, const BlockFilterQuery& q) const = 0;
  // Reads, checksums and decompresses block i into *out (replacing its contents).
  // Corruption when the checksum or the LZ4 frame is bad, or when the block is marked bad
  // (then without reading it).
  virtual Status ReadBlock(size_t block, std::string* out) const = 0;
  // Reads block i (into *scratch) and checks it against the index: checksum, LZ4 frame, record
  // syntax and order, first/last ULID, count, topic set and filter. Corruption names the block
  // and the reason; IOError when the read itself fails. Ignores the bad mark.
  virtual Status VerifyBlock(size_t block, std::string* scratch) const = 0;
  // Every block as VerifyBlock, stopping at the first failure.
  virtual Status Verify() const = 0;

  // Bad blocks: a block found corrupt (its checksum, LZ4 frame or records) is marked, and every
  // reader of the store steps over it (StoreLog::MarkBlockBad marks, counts and reports it);
  // the other blocks stay readable. Marks live in memory with this reader. Thread-safe.
  // MarkBlockBad returns true when the block was not marked before.
  virtual bool MarkBlockBad(size_t block) const = 0;
  virtual bool BlockBad(size_t block) const = 0;
  virtual size_t bad_blocks() const = 0;
};

}  // namespace oklog
