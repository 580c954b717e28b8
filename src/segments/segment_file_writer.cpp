// SegmentWriter: records are copied into the open block (or, for one record of at least the
// block target, compressed straight from the caller's bytes), each closed block is compressed
// into a large output buffer that is written with one write() per MiB or more, and the index
// is kept in memory until Finish. Nothing is allocated per record once buffers have grown.
#include <fcntl.h>
#include <lz4frame.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <numeric>
#include <unordered_map>

#include "segments/crc32c.h"
#include "segments/segment_file.h"
#include "common/file_util.h"
#include "segments/segment_file_internal.h"

namespace oklog {
namespace {

namespace sf = segment_format;
using namespace segment_internal;

constexpr size_t kWriteChunkBytes = size_t{1} << 20;  // write() once this much is buffered

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

LZ4F_blockSizeID_t BlockSizeIdFor(size_t raw) {
  if (raw <= (size_t{64} << 10)) return LZ4F_max64KB;
  if (raw <= (size_t{256} << 10)) return LZ4F_max256KB;
  if (raw <= (size_t{1} << 20)) return LZ4F_max1MB;
  return LZ4F_max4MB;
}

class SegmentWriterImpl final : public SegmentWriter {
 public:
  SegmentWriterImpl(std::string dir, std::string tmp_path, int fd, SegmentWriterOptions options, LZ4F_cctx* cctx)
      : dir_(std::move(dir)), tmp_path_(std::move(tmp_path)), fd_(fd), options_(options), cctx_(cctx) {
    block_.reserve(options_.block_target_bytes);
    out_cap_ = std::max(2 * kWriteChunkBytes, LZ4F_compressFrameBound(options_.block_target_bytes, nullptr) + kWriteChunkBytes);
    out_ = std::make_unique<char[]>(out_cap_);
  }
  ~SegmentWriterImpl() override {
    if (!finished_) Abandon();
    LZ4F_freeCompressionContext(cctx_);
  }

  Status Append(std::string_view rec) override;
  uint64_t records() const override { return records_; }
  uint64_t raw_bytes() const override { return raw_bytes_; }
  uint64_t written_bytes() const override { return written_bytes_; }
  Result<std::string> Finish() override;
  void Abandon() override;

 private:
  Status CloseBlock(const char* data, size_t n);
  Status FlushOut();
  void AddTopic(std::string_view topic);

  const std::string dir_;
  const std::string tmp_path_;
  int fd_;
  const SegmentWriterOptions options_;
  LZ4F_cctx* const cctx_;
  Status error_;          // sticky I/O error
  bool finished_ = false;

  // The open block.
  std::string block_;
  uint32_t block_records_ = 0;
  char first_text_[sf::kUlidTextSize] = {};
  char last_text_[sf::kUlidTextSize] = {};  // of the last record appended (any block)
  std::vector<uint32_t> block_topics_;      // ids into topic_names_
  uint32_t block_flags_ = 0;
  GramFilterBuilder filter_;

  // Output not yet written.
  std::unique_ptr<char[]> out_;
  size_t out_cap_ = 0;
  size_t out_len_ = 0;

  // Topic table: ids in order of first appearance; sorted at Finish.
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> topic_ids_;
  std::vector<std::string> topic_names_;
  std::vector<uint64_t> topic_in_block_;  // per id: 1 + number of the block it was last added to
  std::string last_topic_;
  uint32_t last_topic_id_ = UINT32_MAX;   // UINT32_MAX: not in the table

  std::vector<PendingBlock> blocks_;
  uint64_t records_ = 0;
  uint64_t raw_bytes_ = 0;
  uint64_t written_bytes_ = 0;
};

void SegmentWriterImpl::AddTopic(std::string_view topic) {
  if (topic != last_topic_ || last_topic_id_ == UINT32_MAX) {
    last_topic_.assign(topic);
    auto it = topic_ids_.find(topic);
    if (it != topic_ids_.end()) {
      last_topic_id_ = it->second;
    } else if (topic.size() <= sf::kMaxTopicBytes && topic_names_.size() < sf::kMaxSegmentTopics) {
      last_topic_id_ = static_cast<uint32_t>(topic_names_.size());
      topic_names_.emplace_back(topic);
      topic_ids_.emplace(topic_names_.back(), last_topic_id_);
      topic_in_block_.push_back(0);
    } else {
      last_topic_id_ = UINT32_MAX;
    }
  }
  if (last_topic_id_ == UINT32_MAX) {
    block_flags_ |= sf::kBlockTopicsIncomplete;
    return;
  }
  const uint64_t mark = blocks_.size() + 1;
  if (topic_in_block_[last_topic_id_] == mark) return;
  if (block_topics_.size() >= sf::kMaxTopicsPerBlock) {
    block_flags_ |= sf::kBlockTopicsIncomplete;
    return;
  }
  topic_in_block_[last_topic_id_] = mark;
  block_topics_.push_back(last_topic_id_);
}

Status SegmentWriterImpl::Append(std::string_view rec) {
  if (!error_.ok()) return error_;
  if (finished_) return Status::InvalidArgument("append to a finished segment writer");
  std::string_view topic;
  if (!ParseRecord(rec, &topic)) return Status::InvalidArgument("malformed segment record");
  if (records_ > 0 && std::memcmp(rec.data(), last_text_, sf::kUlidTextSize) <= 0)
    return Status::InvalidArgument("record ULID " + std::string(rec.substr(0, sf::kUlidTextSize)) +
                                   " not after " + std::string(last_text_, sf::kUlidTextSize));
  const size_t target = options_.block_target_bytes;
  const bool needs_new_block = block_records_ == 0 || block_.size() + rec.size() > target;
  if (needs_new_block && blocks_.size() + (block_records_ > 0 ? 1 : 0) >= sf::kMaxBlocks)
    return Status::ResourceExhausted("segment holds the maximum number of blocks");
  if (block_records_ > 0 && block_.size() + rec.size() > target) {
    OKLOG_RETURN_IF_ERROR(CloseBlock(block_.data(), block_.size()));
  }
  if (block_records_ == 0) {
    filter_.Reset(std::max(target, rec.size()));
    std::memcpy(first_text_, rec.data(), sf::kUlidTextSize);
  }
  std::memcpy(last_text_, rec.data(), sf::kUlidTextSize);
  filter_.AddPayload(rec.data() + sf::kUlidTextSize + 1, rec.size() - sf::kUlidTextSize - 1);
  AddTopic(topic);
  ++block_records_;
  ++records_;
  raw_bytes_ += rec.size();
  if (block_records_ == 1 && rec.size() >= target) {
    return CloseBlock(rec.data(), rec.size());  // a block of its own, without a copy
  }
  block_.append(rec);
  if (block_.size() >= target) return CloseBlock(block_.data(), block_.size());
  return Status::Ok();
}

Status SegmentWriterImpl::CloseBlock(const char* data, size_t n) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.blockSizeID = BlockSizeIdFor(n);
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  prefs.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
  prefs.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
  prefs.frameInfo.contentSize = n;
  // Levels below 1 select LZ4's fast mode with acceleration -level.
  prefs.compressionLevel = options_.lz4_acceleration <= 1 ? 1 : -options_.lz4_acceleration;
  prefs.autoFlush = 1;  // compress straight into our buffer, nothing held back in the context
  const size_t bound = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(n, &prefs);
  if (out_len_ + bound > out_cap_) {
    OKLOG_RETURN_IF_ERROR(FlushOut());
    if (bound > out_cap_) {
      out_cap_ = bound;
      out_ = std::make_unique<char[]>(out_cap_);
    }
  }
  char* dst = out_.get() + out_len_;
  // The streaming API on a reused context: one frame per block, no per-block allocation.
  const size_t cap = out_cap_ - out_len_;
  size_t csize = LZ4F_compressBegin(cctx_, dst, cap, &prefs);
  size_t rc = csize;
  if (!LZ4F_isError(rc)) {
    rc = LZ4F_compressUpdate(cctx_, dst + csize, cap - csize, data, n, nullptr);
    csize += LZ4F_isError(rc) ? 0 : rc;
  }
  if (!LZ4F_isError(rc)) {
    rc = LZ4F_compressEnd(cctx_, dst + csize, cap - csize, nullptr);
    csize += LZ4F_isError(rc) ? 0 : rc;
  }
  if (LZ4F_isError(rc)) {
    error_ = Status::IOError(std::string("lz4 compression failed: ") + LZ4F_getErrorName(rc));
    return error_;
  }
  OKLOG_CHECK(csize <= sf::kMaxBlockFrameBytes);

  PendingBlock b;
  b.compressed_size = static_cast<uint32_t>(csize);
  b.raw_size = static_cast<uint32_t>(n);
  b.records = block_records_;
  b.crc32c = crc32c::Value(dst, csize);
  b.first = *Ulid::Parse(std::string_view(first_text_, sf::kUlidTextSize));
  b.last = *Ulid::Parse(std::string_view(last_text_, sf::kUlidTextSize));
  b.flags = block_flags_;
  b.topic_ids = block_topics_;
  filter_.Finish(csize, &b.filter);
  blocks_.push_back(std::move(b));

  out_len_ += csize;
  written_bytes_ += csize;
  block_.clear();
  block_records_ = 0;
  block_topics_.clear();
  block_flags_ = 0;
  if (out_len_ >= kWriteChunkBytes) return FlushOut();
  return Status::Ok();
}

Status SegmentWriterImpl::FlushOut() {
  if (out_len_ == 0) return Status::Ok();
  Status s = WriteAll(fd_, out_.get(), out_len_, tmp_path_);
  out_len_ = 0;
  if (!s.ok()) error_ = s;
  return s;
}

Result<std::string> SegmentWriterImpl::Finish() {
  if (!error_.ok()) return error_;
  if (finished_) return Status::InvalidArgument("segment writer already finished");
  if (records_ == 0) {
    Abandon();
    return Status::NotFound("no records: no segment written");
  }
  auto fail = [this](Status s) -> Status {
    error_ = s;
    Abandon();
    return s;
  };
  if (block_records_ > 0) {
    Status s = CloseBlock(block_.data(), block_.size());
    if (!s.ok()) return fail(s);
  }
  Status s = FlushOut();
  if (!s.ok()) return fail(s);

  // Topic table sorted by name; block topic ids renumbered to match.
  std::vector<uint32_t> order(topic_names_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return topic_names_[a] < topic_names_[b]; });
  std::vector<uint32_t> new_id(order.size());
  std::vector<std::string> sorted_topics(order.size());
  for (uint32_t i = 0; i < order.size(); ++i) {
    new_id[order[i]] = i;
    sorted_topics[i] = topic_names_[order[i]];
  }
  for (auto& b : blocks_) {
    for (auto& id : b.topic_ids) id = new_id[id];
    std::sort(b.topic_ids.begin(), b.topic_ids.end());
  }
  std::string index;
  EncodeIndex(sorted_topics, blocks_, &index);
  if (index.size() > sf::kMaxIndexBytes) {
    // Only reachable with enormous filters: drop them (an empty filter is always valid).
    for (auto& b : blocks_) b.filter.clear();
    index.clear();
    EncodeIndex(sorted_topics, blocks_, &index);
    if (index.size() > sf::kMaxIndexBytes) return fail(Status::ResourceExhausted("segment index too large"));
  }
  std::string tail;
  tail.reserve(sf::kSkippableHeaderSize + index.size() + sf::kFooterSize);
  EncodeIndexFrameHeader(static_cast<uint32_t>(index.size()), &tail);
  Footer f;
  f.index_offset = written_bytes_ + sf::kSkippableHeaderSize;
  f.index_size = static_cast<uint32_t>(index.size());
  f.index_crc32c = crc32c::Value(index.data(), index.size());
  tail += index;
  EncodeFooter(f, &tail);
  s = WriteAll(fd_, tail.data(), tail.size(), tmp_path_);
  if (!s.ok()) return fail(s);
  if (::fdatasync(fd_) != 0) return fail(Status::FromErrno("fdatasync", tmp_path_, errno));

  const SegmentName name{blocks_.front().first, blocks_.back().last};
  const std::string final_path = dir_ + "/" + name.FileName();
  // Never overwrite: RENAME_NOREPLACE, or link + unlink where the filesystem lacks it.
  if (::renameat2(AT_FDCWD, tmp_path_.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EINVAL || err == ENOSYS) {
      if (::link(tmp_path_.c_str(), final_path.c_str()) != 0) {
        err = errno;
      } else {
        ::unlink(tmp_path_.c_str());
        err = 0;
      }
    }
    if (err == EEXIST) return fail(Status::AlreadyExists("segment exists: " + final_path));
    if (err != 0) return fail(Status::FromErrno("rename", final_path, err));
  }
  ::close(fd_);
  fd_ = -1;
  finished_ = true;
  s = SyncDir(dir_);
  if (!s.ok()) return s;  // the segment is in place; only its directory entry may not be durable
  return final_path;
}

void SegmentWriterImpl::Abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_path_.c_str());
  }
  finished_ = true;
  if (error_.ok()) error_ = Status::InvalidArgument("segment writer abandoned");
}

}  // namespace

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Create(const std::string& dir, SegmentWriterOptions options) {
  if (options.block_target_bytes < sf::kMinBlockTargetBytes || options.block_target_bytes > sf::kMaxBlockTargetBytes)
    return Status::InvalidArgument("block_target_bytes out of range");
  if (options.lz4_acceleration < 1 || options.lz4_acceleration > 65537)
    return Status::InvalidArgument("lz4_acceleration out of range");
  char name[64];
  std::snprintf(name, sizeof name, "/.segment-%016llx.tmp", static_cast<unsigned long long>(RandomU64()));
  std::string tmp_path = dir + name;
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("create", tmp_path, errno);
  LZ4F_cctx* cctx = nullptr;
  if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION))) {
    ::close(fd);
    ::unlink(tmp_path.c_str());
    return Status::ResourceExhausted("cannot create an LZ4 compression context");
  }
  return std::unique_ptr<SegmentWriter>(new SegmentWriterImpl(dir, std::move(tmp_path), fd, options, cctx));
}

}  // namespace oklog
