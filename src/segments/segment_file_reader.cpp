// SegmentReader: the footer and index are read once at Open; blocks are read with pread (no
// shared file offset, so one reader serves several threads) and decompressed with a
// per-thread LZ4F context and a per-thread buffer for the compressed bytes.
#include <lz4frame.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "segments/crc32c.h"
#include "segments/segment_file.h"
#include "segments/segment_file_internal.h"

namespace oklog {
namespace {

namespace sf = segment_format;
using namespace segment_internal;

constexpr size_t kTailReadBytes = size_t{64} << 10;  // usually footer and index in one pread

// EOF before n bytes is a short file: Corruption, since the index promised the bytes.
Status PreadAll(const RandomAccessFile& file, char* p, size_t n, uint64_t offset) {
  size_t got = 0;
  OKLOG_RETURN_IF_ERROR(file.Read(offset, n, p, &got));
  if (got < n) return Status::Corruption(file.path() + ": file shorter than its index says");
  return Status::Ok();
}

struct ThreadScratch {
  LZ4F_dctx* dctx = nullptr;
  std::unique_ptr<char[]> buf;
  size_t cap = 0;
  ~ThreadScratch() {
    if (dctx != nullptr) LZ4F_freeDecompressionContext(dctx);
  }
  char* Buffer(size_t n) {
    if (n > cap) {
      cap = std::max(n, size_t{512} << 10);
      buf = std::make_unique<char[]>(cap);
    }
    return buf.get();
  }
};

ThreadScratch& Scratch() {
  thread_local ThreadScratch s;
  return s;
}

size_t FrameMaxBlockBytes(const char* frame, size_t n) {
  if (n < 6) return 0;
  const unsigned id = (static_cast<uint8_t>(frame[5]) >> 4) & 7;
  return id >= 4 ? (size_t{64} << 10) << (2 * (id - 4)) : 0;
}

class SegmentReaderImpl final : public SegmentReader {
 public:
  SegmentReaderImpl(std::string path, std::unique_ptr<RandomAccessFile> file, uint64_t file_bytes,
                    std::vector<BlockInfo> blocks)
      : path_(std::move(path)),
        file_(std::move(file)),
        file_bytes_(file_bytes),
        blocks_(std::move(blocks)),
        bad_(new std::atomic<bool>[blocks_.size()]()) {
    for (const auto& b : blocks_) {
      records_ += b.records;
      raw_bytes_ += b.raw_size;
    }
  }

  const std::string& path() const override { return path_; }
  const std::vector<BlockInfo>& blocks() const override { return blocks_; }
  Ulid low() const override { return blocks_.front().first; }
  Ulid high() const override { return blocks_.back().last; }
  uint64_t records() const override { return records_; }
  uint64_t raw_bytes() const override { return raw_bytes_; }
  uint64_t file_bytes() const override { return file_bytes_; }
  bool BlockMayMatch(size_t block, const BlockFilterQuery& q) const override;
  Status ReadBlock(size_t block, std::string* out) const override;
  Status VerifyBlock(size_t block, std::string* scratch) const override;
  Status Verify() const override;
  bool MarkBlockBad(size_t block) const override {
    OKLOG_CHECK(block < blocks_.size());
    if (bad_[block].exchange(true)) return false;
    bad_count_.fetch_add(1);
    return true;
  }
  bool BlockBad(size_t block) const override {
    return block < blocks_.size() && bad_[block].load(std::memory_order_relaxed);
  }
  size_t bad_blocks() const override { return bad_count_.load(); }

 private:
  Status Read(size_t block, std::string* out) const;
  Status VerifyRecords(size_t i, std::string_view text) const;

  const std::string path_;
  const std::unique_ptr<RandomAccessFile> file_;
  const uint64_t file_bytes_;
  const std::vector<BlockInfo> blocks_;
  uint64_t records_ = 0;
  uint64_t raw_bytes_ = 0;
  const std::unique_ptr<std::atomic<bool>[]> bad_;  // one mark per block
  mutable std::atomic<size_t> bad_count_{0};
};

bool SegmentReaderImpl::BlockMayMatch(size_t block, const BlockFilterQuery& q) const {
  OKLOG_CHECK(block < blocks_.size());
  const BlockInfo& b = blocks_[block];
  if (!q.topics().empty() && b.topics_complete) {
    bool any = false;
    for (const auto& t : q.topics()) any = any || std::binary_search(b.topics.begin(), b.topics.end(), t);
    if (!any) return false;
  }
  if (b.filter.empty()) return true;
  for (uint32_t h : q.gram_hashes())
    if (!FilterHasBit(b.filter, h)) return false;
  return true;
}

Status SegmentReaderImpl::ReadBlock(size_t block, std::string* out) const {
  if (block >= blocks_.size()) return Status::InvalidArgument("block index out of range");
  if (BlockBad(block)) {
    out->clear();
    return Status::Corruption(path_ + " block " + std::to_string(block) + ": marked bad");
  }
  return Read(block, out);
}

Status SegmentReaderImpl::Read(size_t block, std::string* out) const {
  const BlockInfo& b = blocks_[block];
  const std::string where = path_ + " block " + std::to_string(block);
  ThreadScratch& scratch = Scratch();
  char* src = scratch.Buffer(b.compressed_size);
  OKLOG_RETURN_IF_ERROR(PreadAll(*file_, src, b.compressed_size, b.offset));
  if (crc32c::Value(src, b.compressed_size) != b.crc32c) return Status::Corruption(where + ": checksum mismatch");

  if (scratch.dctx == nullptr && LZ4F_isError(LZ4F_createDecompressionContext(&scratch.dctx, LZ4F_VERSION))) {
    scratch.dctx = nullptr;
    return Status::ResourceExhausted("cannot create an LZ4 decompression context");
  }
  LZ4F_resetDecompressionContext(scratch.dctx);
  // LZ4F decodes straight into the destination only when at least one frame block's worth of
  // room is left; give it that room so it never goes through its own buffer and a copy.
  const size_t room = std::max<size_t>(b.raw_size, FrameMaxBlockBytes(src, b.compressed_size));
  out->resize(room);
  size_t dst_size = room;
  size_t src_size = b.compressed_size;
  const size_t rc = LZ4F_decompress(scratch.dctx, out->data(), &dst_size, src, &src_size, nullptr);
  if (LZ4F_isError(rc)) {
    out->clear();
    return Status::Corruption(where + ": bad LZ4 frame: " + LZ4F_getErrorName(rc));
  }
  if (rc != 0 || src_size != b.compressed_size || dst_size != b.raw_size) {
    out->clear();
    return Status::Corruption(where + ": LZ4 frame size does not match the index");
  }
  out->resize(b.raw_size);
  return Status::Ok();
}

// Cross-block order needs no state: the index (DecodeIndex) orders the blocks' ranges strictly,
// and each block's records are checked against its own first and last ULID.
Status SegmentReaderImpl::VerifyRecords(size_t i, std::string_view text) const {
  const BlockInfo& b = blocks_[i];
  const std::string where = path_ + " block " + std::to_string(i);
  size_t pos = 0;
  uint32_t n = 0;
  const char* prev = nullptr;
  Ulid last;
  std::vector<bool> topic_seen(b.topics.size());
  while (pos < text.size()) {
    const void* lf = std::memchr(text.data() + pos, '\n', text.size() - pos);
    if (lf == nullptr) return Status::Corruption(where + ": last record has no LF");
    const size_t end = static_cast<size_t>(static_cast<const char*>(lf) - text.data()) + 1;
    const std::string_view rec = text.substr(pos, end - pos);
    std::string_view topic;
    if (!ParseRecord(rec, &topic)) return Status::Corruption(where + ": malformed record at byte " + std::to_string(pos));
    if (prev != nullptr && std::memcmp(prev, rec.data(), sf::kUlidTextSize) >= 0)
      return Status::Corruption(where + ": ULIDs not increasing at byte " + std::to_string(pos));
    const Ulid u = *Ulid::Parse(rec.substr(0, sf::kUlidTextSize));
    if (n == 0 && u != b.first) return Status::Corruption(where + ": first ULID differs from the index");
    auto it = std::lower_bound(b.topics.begin(), b.topics.end(), topic);
    if (it != b.topics.end() && *it == topic) {
      topic_seen[static_cast<size_t>(it - b.topics.begin())] = true;
    } else if (b.topics_complete) {
      return Status::Corruption(where + ": record topic missing from the block's topic set");
    }
    if (!b.filter.empty()) {
      bool missing = false;
      ForEachGramHash(rec.data() + sf::kUlidTextSize + 1, rec.size() - sf::kUlidTextSize - 1,
                      [&](uint32_t h) { missing = missing || !FilterHasBit(b.filter, h); });
      if (missing) return Status::Corruption(where + ": filter misses a gram of a record");
    }
    prev = rec.data();
    last = u;
    ++n;
    pos = end;
  }
  if (n != b.records) return Status::Corruption(where + ": record count differs from the index");
  if (last != b.last) return Status::Corruption(where + ": last ULID differs from the index");
  if (std::find(topic_seen.begin(), topic_seen.end(), false) != topic_seen.end())
    return Status::Corruption(where + ": topic set lists a topic no record has");
  return Status::Ok();
}

Status SegmentReaderImpl::VerifyBlock(size_t block, std::string* scratch) const {
  if (block >= blocks_.size()) return Status::InvalidArgument("block index out of range");
  OKLOG_RETURN_IF_ERROR(Read(block, scratch));
  return VerifyRecords(block, *scratch);
}

Status SegmentReaderImpl::Verify() const {
  std::string text;
  for (size_t i = 0; i < blocks_.size(); ++i) OKLOG_RETURN_IF_ERROR(VerifyBlock(i, &text));
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<SegmentReader>> SegmentReader::Open(const std::string& path, Env* env) {
  auto opened = env->NewRandomAccessFile(path);
  if (opened.status().code() == Code::kNotFound) return Status::NotFound("no segment " + path);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<RandomAccessFile> file = std::move(opened).value();
  auto fail = [](Status s) -> Status { return s; };
  OKLOG_ASSIGN_OR_RETURN(const uint64_t size, file->Size());
  if (size < sf::kMinBlockFrameBytes + sf::kSkippableHeaderSize + sf::kFooterSize)
    return fail(Status::Corruption(path + ": too short for a segment"));

  const size_t tail_len = static_cast<size_t>(std::min<uint64_t>(size, kTailReadBytes));
  std::string tail(tail_len, '\0');
  Status s = PreadAll(*file, tail.data(), tail_len, size - tail_len);
  if (!s.ok()) return fail(s);
  Footer f;
  s = DecodeFooter(tail.data() + tail_len - sf::kFooterSize, size, &f);
  if (!s.ok()) return fail(Status::Corruption(path + ": " + s.message()));

  // The skippable frame header and the index, from the tail if it holds them.
  const uint64_t frame_start = f.index_offset - sf::kSkippableHeaderSize;
  std::string frame;
  const size_t frame_len = sf::kSkippableHeaderSize + f.index_size;
  if (size - frame_start <= tail_len) {
    frame = tail.substr(static_cast<size_t>(frame_start - (size - tail_len)), frame_len);
  } else {
    frame.resize(frame_len);
    s = PreadAll(*file, frame.data(), frame_len, frame_start);
    if (!s.ok()) return fail(s);
  }
  if (GetFixed32(frame.data()) != sf::kIndexFrameMagic ||
      GetFixed32(frame.data() + 4) != f.index_size + sf::kFooterSize)
    return fail(Status::Corruption(path + ": bad index frame header"));
  const std::string_view index(frame.data() + sf::kSkippableHeaderSize, f.index_size);
  if (crc32c::Value(index.data(), index.size()) != f.index_crc32c)
    return fail(Status::Corruption(path + ": index checksum mismatch"));
  std::vector<BlockInfo> blocks;
  s = DecodeIndex(index, frame_start, &blocks);
  if (!s.ok()) return fail(Status::Corruption(path + ": " + s.message()));
  return std::unique_ptr<SegmentReader>(new SegmentReaderImpl(path, std::move(file), size, std::move(blocks)));
}

}  // namespace oklog
