// The write side of store segment files. One Encoder turns records into the file's bytes:
// records are copied into the open block (or, for one record of at least the block target,
// compressed straight from the caller's bytes), each closed block is compressed into the output
// buffer, and the index is kept in memory until the end. SegmentWriter streams that output to
// a temporary file (one write() per MiB or more); SegmentEncoder keeps the whole file in memory
// for replication, where WriteSegmentImage installs it and CheckSegmentImage checks a peer's.
// Nothing is allocated per record once buffers have grown.
#include <lz4frame.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <unordered_map>

#include "segments/crc32c.h"
#include "segments/segment_file.h"
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

Status CheckOptions(const SegmentWriterOptions& options) {
  if (options.block_target_bytes < sf::kMinBlockTargetBytes || options.block_target_bytes > sf::kMaxBlockTargetBytes)
    return Status::InvalidArgument("block_target_bytes out of range");
  if (options.lz4_acceleration < 1 || options.lz4_acceleration > 65537)
    return Status::InvalidArgument("lz4_acceleration out of range");
  return Status::Ok();
}

Result<LZ4F_cctx*> NewCompressionContext() {
  LZ4F_cctx* cctx = nullptr;
  if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)))
    return Status::ResourceExhausted("cannot create an LZ4 compression context");
  return cctx;
}

// Records in, file bytes out: blocks as they close, then the index frame and footer from
// FinishFile. The caller takes bytes from pending() whenever it likes (the file writer writes
// them and calls Consumed(); the in-memory encoder leaves everything there and Release()s it).
// The buffer's size only grows (pending bytes are its first pending_ bytes), so each block is
// compressed straight into it and a byte is zero-filled once, not once per block.
class Encoder {
 public:
  Encoder(SegmentWriterOptions options, LZ4F_cctx* cctx, size_t out_reserve) : options_(options), cctx_(cctx) {
    block_.reserve(options_.block_target_bytes);
    out_.reserve(out_reserve);
  }
  ~Encoder() { LZ4F_freeCompressionContext(cctx_); }
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  Status Append(std::string_view rec);
  // Closes the open block and appends the index frame and footer to out(). NotFound with no
  // records. Nothing may be appended afterwards.
  Status FinishFile();
  std::string_view pending() const { return std::string_view(out_.data(), out_len_); }
  void Consumed() { out_len_ = 0; }
  std::string Release() {
    out_.resize(out_len_);
    out_len_ = 0;
    return std::move(out_);
  }
  SegmentName name() const { return SegmentName{blocks_.front().first, blocks_.back().last}; }
  uint64_t records() const { return records_; }
  uint64_t raw_bytes() const { return raw_bytes_; }
  uint64_t written_bytes() const { return written_bytes_; }

 private:
  Status CloseBlock(const char* data, size_t n);
  void AddTopic(std::string_view topic);

  const SegmentWriterOptions options_;
  LZ4F_cctx* const cctx_;
  Status error_;  // sticky compression error

  // The open block.
  std::string block_;
  uint32_t block_records_ = 0;
  char first_text_[sf::kUlidTextSize] = {};
  char last_text_[sf::kUlidTextSize] = {};  // of the last record appended (any block)
  std::vector<uint32_t> block_topics_;      // ids into topic_names_
  uint32_t block_flags_ = 0;
  GramFilterBuilder filter_;

  std::string out_;     // [0, out_len_): bytes produced and not yet taken by the caller
  size_t out_len_ = 0;

  // Topic table: ids in order of first appearance; sorted at FinishFile.
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> topic_ids_;
  std::vector<std::string> topic_names_;
  std::vector<uint64_t> topic_in_block_;  // per id: 1 + number of the block it was last added to
  std::string last_topic_;
  uint32_t last_topic_id_ = UINT32_MAX;   // UINT32_MAX: not in the table

  std::vector<PendingBlock> blocks_;
  uint64_t records_ = 0;
  uint64_t raw_bytes_ = 0;
  uint64_t written_bytes_ = 0;  // blocks' compressed bytes
};

void Encoder::AddTopic(std::string_view topic) {
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

Status Encoder::Append(std::string_view rec) {
  if (!error_.ok()) return error_;
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

Status Encoder::CloseBlock(const char* data, size_t n) {
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
  const size_t start = out_len_;
  if (out_.size() < start + bound) out_.resize(start + bound);  // zero-fills only new bytes
  char* dst = out_.data() + start;
  // The streaming API on a reused context: one frame per block, no per-block allocation.
  size_t csize = LZ4F_compressBegin(cctx_, dst, bound, &prefs);
  size_t rc = csize;
  if (!LZ4F_isError(rc)) {
    rc = LZ4F_compressUpdate(cctx_, dst + csize, bound - csize, data, n, nullptr);
    csize += LZ4F_isError(rc) ? 0 : rc;
  }
  if (!LZ4F_isError(rc)) {
    rc = LZ4F_compressEnd(cctx_, dst + csize, bound - csize, nullptr);
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

  out_len_ = start + csize;
  written_bytes_ += csize;
  block_.clear();
  block_records_ = 0;
  block_topics_.clear();
  block_flags_ = 0;
  return Status::Ok();
}

Status Encoder::FinishFile() {
  if (!error_.ok()) return error_;
  if (records_ == 0) return Status::NotFound("no records: no segment written");
  if (block_records_ > 0) OKLOG_RETURN_IF_ERROR(CloseBlock(block_.data(), block_.size()));

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
    if (index.size() > sf::kMaxIndexBytes) {
      error_ = Status::ResourceExhausted("segment index too large");
      return error_;
    }
  }
  out_.resize(out_len_);
  out_.reserve(out_len_ + sf::kSkippableHeaderSize + index.size() + sf::kFooterSize);
  EncodeIndexFrameHeader(static_cast<uint32_t>(index.size()), &out_);
  Footer f;
  f.index_offset = written_bytes_ + sf::kSkippableHeaderSize;
  f.index_size = static_cast<uint32_t>(index.size());
  f.index_crc32c = crc32c::Value(index.data(), index.size());
  out_ += index;
  EncodeFooter(f, &out_);
  out_len_ = out_.size();
  error_ = Status::InvalidArgument("segment already finished");  // nothing may follow
  return Status::Ok();
}

class SegmentWriterImpl final : public SegmentWriter {
 public:
  SegmentWriterImpl(Env* env, std::string dir, std::unique_ptr<WritableFile> file, SegmentWriterOptions options,
                    LZ4F_cctx* cctx)
      : env_(env),
        dir_(std::move(dir)),
        tmp_path_(file->path()),
        file_(std::move(file)),
        enc_(options, cctx,
             std::max(2 * kWriteChunkBytes,
                      LZ4F_compressFrameBound(options.block_target_bytes, nullptr) + kWriteChunkBytes)) {}
  ~SegmentWriterImpl() override {
    if (!finished_) Abandon();
  }

  Status Append(std::string_view rec) override;
  uint64_t records() const override { return enc_.records(); }
  uint64_t raw_bytes() const override { return enc_.raw_bytes(); }
  uint64_t written_bytes() const override { return enc_.written_bytes(); }
  Result<std::string> Finish() override;
  void Abandon() override;

 private:
  Status FlushOut();

  Env* const env_;
  const std::string dir_;
  const std::string tmp_path_;
  std::unique_ptr<WritableFile> file_;  // null once finished or abandoned
  Encoder enc_;
  Status error_;  // sticky I/O error
  bool finished_ = false;
};

Status SegmentWriterImpl::Append(std::string_view rec) {
  if (!error_.ok()) return error_;
  if (finished_) return Status::InvalidArgument("append to a finished segment writer");
  Status s = enc_.Append(rec);
  if (s.code() == Code::kIOError) error_ = s;
  if (enc_.pending().size() >= kWriteChunkBytes) {
    Status f = FlushOut();
    if (s.ok()) s = f;
  }
  return s;
}

Status SegmentWriterImpl::FlushOut() {
  const std::string_view out = enc_.pending();
  if (out.empty()) return Status::Ok();
  Status s = file_->Append(out);
  enc_.Consumed();
  if (!s.ok()) error_ = s;
  return s;
}

Result<std::string> SegmentWriterImpl::Finish() {
  if (!error_.ok()) return error_;
  if (finished_) return Status::InvalidArgument("segment writer already finished");
  auto fail = [this](Status s) -> Status {
    error_ = s;
    Abandon();
    return s;
  };
  if (enc_.records() == 0) {
    Abandon();
    return Status::NotFound("no records: no segment written");
  }
  Status s = enc_.FinishFile();
  if (!s.ok()) return fail(s);
  s = FlushOut();
  if (!s.ok()) return fail(s);
  s = file_->Sync();
  if (!s.ok()) return fail(s);

  const std::string final_path = dir_ + "/" + enc_.name().FileName();
  s = env_->RenameNoReplace(tmp_path_, final_path);
  if (s.code() == Code::kAlreadyExists) s = Status::AlreadyExists("segment exists: " + final_path);
  if (!s.ok()) return fail(s);
  (void)file_->Close();  // the data is synced; a close error cannot lose it
  file_.reset();
  finished_ = true;
  s = env_->SyncDir(dir_);
  if (!s.ok()) return s;  // the segment is in place; only its directory entry may not be durable
  return final_path;
}

void SegmentWriterImpl::Abandon() {
  if (file_) {
    file_.reset();
    (void)env_->RemoveFile(tmp_path_);  // best effort: StoreLog::Open removes leftover .tmp files
  }
  finished_ = true;
  if (error_.ok()) error_ = Status::InvalidArgument("segment writer abandoned");
}

class SegmentEncoderImpl final : public SegmentEncoder {
 public:
  SegmentEncoderImpl(SegmentWriterOptions options, LZ4F_cctx* cctx, size_t reserve) : enc_(options, cctx, reserve) {}
  Status Append(std::string_view rec) override {
    if (finished_) return Status::InvalidArgument("append to a finished segment encoder");
    return enc_.Append(rec);
  }
  uint64_t records() const override { return enc_.records(); }
  uint64_t raw_bytes() const override { return enc_.raw_bytes(); }
  Result<SegmentImage> Finish() override {
    if (finished_) return Status::InvalidArgument("segment encoder already finished");
    finished_ = true;
    OKLOG_RETURN_IF_ERROR(enc_.FinishFile());
    return SegmentImage{enc_.name(), enc_.records(), enc_.Release()};
  }

 private:
  Encoder enc_;
  bool finished_ = false;
};

std::string TempPath(const std::string& dir) {
  char name[64];
  std::snprintf(name, sizeof name, "/.segment-%016llx.tmp", static_cast<unsigned long long>(RandomU64()));
  return dir + name;
}

// The LZ4 frame descriptor's flags byte (the byte after the magic).
constexpr uint8_t kLz4FlagVersionMask = 0xC0, kLz4FlagVersion1 = 0x40, kLz4FlagContentSize = 0x08;

}  // namespace

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Create(const std::string& dir, SegmentWriterOptions options,
                                                             Env* env) {
  OKLOG_RETURN_IF_ERROR(CheckOptions(options));
  const std::string tmp_path = TempPath(dir);
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(tmp_path));
  Result<LZ4F_cctx*> cctx = NewCompressionContext();
  if (!cctx.ok()) {
    file.reset();
    (void)env->RemoveFile(tmp_path);  // best effort, as in Abandon
    return cctx.status();
  }
  return std::unique_ptr<SegmentWriter>(new SegmentWriterImpl(env, dir, std::move(file), options, *cctx));
}

Result<std::unique_ptr<SegmentEncoder>> SegmentEncoder::Create(SegmentWriterOptions options, uint64_t raw_bytes_hint) {
  OKLOG_RETURN_IF_ERROR(CheckOptions(options));
  OKLOG_ASSIGN_OR_RETURN(LZ4F_cctx * cctx, NewCompressionContext());
  // Typical log text compresses 3-10x; a larger file grows the buffer once or twice.
  const size_t reserve = static_cast<size_t>(std::min<uint64_t>(raw_bytes_hint / 2, uint64_t{256} << 20)) +
                         LZ4F_compressFrameBound(options.block_target_bytes, nullptr);
  return std::unique_ptr<SegmentEncoder>(new SegmentEncoderImpl(options, cctx, reserve));
}

Result<SegmentImageInfo> CheckSegmentImage(std::string_view file) {
  if (file.size() < sf::kMinBlockFrameBytes + sf::kSkippableHeaderSize + sf::kFooterSize)
    return Status::Corruption("too short for a segment (" + std::to_string(file.size()) + " bytes)");
  Footer f;
  Status s = DecodeFooter(file.data() + file.size() - sf::kFooterSize, file.size(), &f);
  if (!s.ok()) return s;
  // DecodeFooter's sum offset + size + footer == file size can wrap around for a crafted offset
  // near 2^64 (its checksum is no defence against a peer); bound the offset itself.
  if (f.index_offset > file.size()) return Status::Corruption("index position does not match file size");
  const uint64_t frame_start = f.index_offset - sf::kSkippableHeaderSize;
  if (GetFixed32(file.data() + frame_start) != sf::kIndexFrameMagic ||
      GetFixed32(file.data() + frame_start + 4) != f.index_size + sf::kFooterSize)
    return Status::Corruption("bad index frame header");
  const std::string_view index = file.substr(f.index_offset, f.index_size);
  if (crc32c::Value(index.data(), index.size()) != f.index_crc32c) return Status::Corruption("index checksum mismatch");
  SegmentImageInfo info;
  s = DecodeIndex(index, frame_start, &info.blocks);
  if (!s.ok()) return s;
  for (size_t i = 0; i < info.blocks.size(); ++i) {
    const BlockInfo& b = info.blocks[i];
    const char* frame = file.data() + b.offset;
    if (crc32c::Value(frame, b.compressed_size) != b.crc32c)
      return Status::Corruption("block " + std::to_string(i) + ": checksum mismatch");
    // The frame header as SegmentWriter writes it: LZ4 magic, version 1, and the content size
    // (when present) equal to the index's raw size. The checksum above covers the rest.
    const uint8_t flags = static_cast<uint8_t>(frame[4]);
    const bool has_size = (flags & kLz4FlagContentSize) != 0;
    if (GetFixed32(frame) != sf::kLz4FrameMagic || (flags & kLz4FlagVersionMask) != kLz4FlagVersion1 ||
        (has_size && (b.compressed_size < 6 + 8 || GetFixed64(frame + 6) != b.raw_size)))
      return Status::Corruption("block " + std::to_string(i) + ": not an LZ4 frame of the indexed size");
    info.records += b.records;
  }
  info.name = SegmentName{info.blocks.front().first, info.blocks.back().last};
  return info;
}

Result<std::string> WriteSegmentImage(const std::string& dir, std::string_view file, const SegmentName& name,
                                      Env* env) {
  const std::string final_path = dir + "/" + name.FileName();
  // The common collision (a replayed batch) costs no write and no fsync; the rename below
  // still refuses to replace a file that appears meanwhile.
  if (env->GetFileInfo(final_path).ok()) return Status::AlreadyExists("segment exists: " + final_path);
  const std::string tmp_path = TempPath(dir);
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, env->NewWritableFile(tmp_path));
  Status s = out->Append(file);
  if (s.ok()) s = out->Sync();
  if (s.ok()) s = out->Close();
  out.reset();
  if (s.ok()) {
    s = env->RenameNoReplace(tmp_path, final_path);
    if (s.code() == Code::kAlreadyExists) s = Status::AlreadyExists("segment exists: " + final_path);
  }
  if (!s.ok()) {
    (void)env->RemoveFile(tmp_path);  // best effort: StoreLog::Open removes leftover .tmp files
    return s;
  }
  OKLOG_RETURN_IF_ERROR(env->SyncDir(dir));
  return final_path;
}

}  // namespace oklog
