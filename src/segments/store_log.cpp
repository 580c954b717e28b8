#include "segments/store_log.h"

#include <lz4frame.h>

#include <algorithm>
#include <string_view>

#include "common/log.h"
#include "segments/record_merge.h"

namespace oklog {
namespace {

bool ByRange(const std::shared_ptr<const SegmentReader>& a, const std::shared_ptr<const SegmentReader>& b) {
  if (a->low() != b->low()) return a->low() < b->low();
  return a->high() < b->high();
}

std::string BaseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Whether the file at path holds exactly `bytes` (a replayed batch encodes to the same file).
bool SameFile(Env* env, const std::string& path, std::string_view bytes) {
  Result<FileInfo> info = env->GetFileInfo(path);
  if (!info.ok() || info->size != bytes.size()) return false;
  std::string have;
  have.reserve(bytes.size());
  return AppendFileContents(env, path, &have).ok() && have == bytes;
}

// The record text of checked segment file bytes, every block decompressed in order.
Status DecodeImageText(std::string_view file, const std::vector<BlockInfo>& blocks, std::string* text) {
  LZ4F_dctx* raw = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION)))
    return Status::ResourceExhausted("cannot create an LZ4 decompression context");
  std::unique_ptr<LZ4F_dctx, decltype(&LZ4F_freeDecompressionContext)> dctx(raw, LZ4F_freeDecompressionContext);
  uint64_t total = 0;
  for (const BlockInfo& b : blocks) total += b.raw_size;
  text->clear();
  text->reserve(total);
  for (size_t i = 0; i < blocks.size(); ++i) {
    const BlockInfo& b = blocks[i];
    const size_t start = text->size();
    text->resize(start + b.raw_size);
    size_t out = 0, in = 0, rc = 1;
    LZ4F_resetDecompressionContext(dctx.get());
    while (rc != 0) {
      size_t dst = b.raw_size - out, src = b.compressed_size - in;
      rc = LZ4F_decompress(dctx.get(), text->data() + start + out, &dst, file.data() + b.offset + in, &src, nullptr);
      if (LZ4F_isError(rc)) return Status::Corruption("block " + std::to_string(i) + ": " + LZ4F_getErrorName(rc));
      out += dst;
      in += src;
      if (rc != 0 && dst == 0 && src == 0) break;  // no progress: the frame is short
    }
    if (rc != 0 || out != b.raw_size || in != b.compressed_size)
      return Status::Corruption("block " + std::to_string(i) + ": LZ4 frame does not match the index");
  }
  return Status::Ok();
}

}  // namespace

StoreLog::StoreLog(std::string dir, StoreLogOptions options, Registry* m)
    : dir_(std::move(dir)), options_(options) {
  quarantined_ = m->NewCounter("oklog_store_quarantined_segments_total",
                               "Segment files that failed verification and were moved to quarantine/.");
  blocks_quarantined_ = m->NewCounter("oklog_store_blocks_quarantined_total",
                                      "Segment blocks found corrupt (checksum, LZ4 frame, records) and stepped over; "
                                      "the rest of their segments stays queryable.");
  skipped_files_ = m->NewCounter("oklog_store_skipped_files_total",
                                 "Entries of the store directory skipped at start: not regular files (FIFOs, sockets, "
                                 "devices, directories).");
  segments_gauge_ = m->NewGauge("oklog_store_segments", "Store segments queryable on this node.");
  bytes_gauge_ = m->NewGauge("oklog_store_segment_bytes", "Bytes on disk of queryable store segments.");
}

StoreLog::~StoreLog() = default;

Result<std::unique_ptr<StoreLog>> StoreLog::Open(const std::string& dir, StoreLogOptions options, Registry* metrics) {
  if (options.env == nullptr) return Status::InvalidArgument("no Env");
  Env* env = options.env;
  OKLOG_RETURN_IF_ERROR(env->CreateDirs(dir));
  std::unique_ptr<StoreLog> log(new StoreLog(dir, options, metrics));
  auto logger = Logger("store");
  std::vector<std::string> names;
  OKLOG_RETURN_IF_ERROR(env->GetChildren(dir, &names));
  // Only regular files are opened: a FIFO, socket, device or directory under a segment's name
  // is left where it is, logged and counted (a FIFO would block an open for reading forever).
  // The two subdirectories we make are expected.
  std::erase_if(names, [&](const std::string& file) {
    if (file == "quarantine" || file == "trash") return false;
    Result<FileInfo> info = env->GetFileInfo(dir + "/" + file);
    if (!info.ok() || info->regular) return false;  // gone, or its open reports the error
    log->skipped_files_->Inc();
    logger->warn("skipping file={}/{} in store directory: not a regular file", dir, file);
    return true;
  });
  std::sort(names.begin(), names.end());
  const std::vector<std::string> listed = names;
  for (std::string& file : names) {
    // A compaction whose output took an input's name moved that input to NAME.seg.replaced
    // first. If NAME.seg exists it is the finished output, which holds every record of the
    // replaced file; otherwise the crash came before the output was renamed into place.
    static constexpr std::string_view kReplaced = ".replaced";
    if (file.size() > kReplaced.size() && file.ends_with(kReplaced)) {
      std::string base = file.substr(0, file.size() - kReplaced.size());
      std::string from = dir + "/" + file, to = dir + "/" + base;
      if (std::binary_search(listed.begin(), listed.end(), base)) {
        (void)env->RemoveFile(from);  // best effort: it is recovered the same way next time
        file.clear();
      } else if (env->RenameFile(from, to).ok()) {
        file = base;
      }
      logger->info("recovered {} of an interrupted compaction", from);
    }
  }
  std::sort(names.begin(), names.end());
  std::vector<std::pair<std::shared_ptr<const SegmentReader>, std::vector<std::pair<size_t, Status>>>> found_bad;
  for (const std::string& file : names) {
    std::string path = dir + "/" + file;
    if (file.empty() || file == "." || file == ".." || file == "quarantine" || file == "trash" ||
        file.starts_with("holdings.log") || file.starts_with("gaps.log"))
      continue;
    if (file.size() > 4 && file[0] == '.' && file.compare(file.size() - 4, 4, ".tmp") == 0) {
      // Never renamed into place, so never acknowledged: its records are still upstream.
      (void)env->RemoveFile(path);  // best effort: it is removed next time
      logger->info("removed unfinished segment file={}", path);
      continue;
    }
    auto name = SegmentName::Parse(file);
    if (!name) {
      if (file.size() > 4 && file.compare(file.size() - 4, 4, ".seg") == 0)
        log->Quarantine(path, Status::Corruption("file name is not LOW-HIGH.seg"));
      else
        logger->warn("ignoring unknown file={} in store directory", path);
      continue;
    }
    auto reader = SegmentReader::Open(path, env);
    if (!reader.ok()) {
      log->Quarantine(path, reader.status());
      continue;
    }
    if ((*reader)->low() != name->low || (*reader)->high() != name->high) {
      log->Quarantine(path, Status::Corruption("ULID range in the index does not match the file name"));
      continue;
    }
    std::shared_ptr<const SegmentReader> seg = std::move(reader).value();
    if (options.verify_on_open) {
      // Block by block: a corrupt block is marked (below, once the holdings are open) and the
      // rest of the segment stays; a read that fails otherwise (EIO) sets the file aside.
      std::string scratch;
      Status file_error;
      std::vector<std::pair<size_t, Status>> bad;
      for (size_t i = 0; i < seg->blocks().size() && file_error.ok(); ++i) {
        Status s = seg->VerifyBlock(i, &scratch);
        if (s.code() == Code::kCorruption) {
          bad.emplace_back(i, s);
        } else if (!s.ok()) {
          file_error = s;
        }
      }
      if (!file_error.ok()) {
        log->Quarantine(path, file_error);
        continue;
      }
      if (!bad.empty()) found_bad.emplace_back(seg, std::move(bad));
    }
    log->segments_.push_back(std::move(seg));
  }
  std::sort(log->segments_.begin(), log->segments_.end(), ByRange);
  OKLOG_ASSIGN_OR_RETURN(log->holdings_, Holdings::Open(env, dir, metrics));
  // A batch is still here while both its ends fall inside segment files (quarantine or a lost
  // directory entry can take them away).
  // Segments are sorted by low: u lies inside one iff the highest `high` among those whose low is
  // <= u reaches it (a prefix maximum, so each look-up is a binary search, not a scan).
  std::vector<Ulid> lows, reach;
  for (const auto& seg : log->segments_) {
    lows.push_back(seg->low());
    reach.push_back(reach.empty() ? seg->high() : std::max(reach.back(), seg->high()));
  }
  log->holdings_->Retain([&](const BatchId& b) {
    auto inside = [&](const Ulid& u) {
      const size_t k = static_cast<size_t>(std::upper_bound(lows.begin(), lows.end(), u) - lows.begin());
      return k > 0 && reach[k - 1] >= u;
    };
    return inside(b.low) && inside(b.high);
  });
  OKLOG_ASSIGN_OR_RETURN(log->gaps_, Gaps::Open(env, dir, metrics));
  for (const auto& [seg, bad] : found_bad)
    for (const auto& [block, why] : bad) log->MarkBlockBad(*seg, block, why);
  log->segments_gauge_->Set(static_cast<double>(log->segments_.size()));
  log->bytes_gauge_->Set(static_cast<double>(log->file_bytes()));
  logger->info("store dir={} segments={} bytes={} quarantined={} bad_blocks={} gaps={} skipped={}", dir,
               log->segments_.size(), log->file_bytes(), log->quarantined(), log->blocks_quarantined(),
               log->gaps_->unhealed(), log->skipped_files());
  return log;
}

std::vector<std::shared_ptr<const SegmentReader>> StoreLog::Select(const Ulid& from, const Ulid& to) const {
  std::vector<std::shared_ptr<const SegmentReader>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : segments_) {
    if (s->low() > to) break;  // sorted by low
    if (s->high() >= from) out.push_back(s);
  }
  return out;
}

std::vector<std::shared_ptr<const SegmentReader>> StoreLog::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  return segments_;
}

Result<std::unique_ptr<SegmentWriter>> StoreLog::NewWriter() const {
  return SegmentWriter::Create(dir_, options_.writer, options_.env);
}

Status StoreLog::Add(const std::string& path) {
  auto reader = SegmentReader::Open(path, options_.env);
  if (!reader.ok()) return reader.status();
  std::shared_ptr<const SegmentReader> seg = std::move(reader).value();
  std::lock_guard<std::mutex> lock(mu_);
  segments_.insert(std::upper_bound(segments_.begin(), segments_.end(), seg, ByRange), seg);
  segments_gauge_->Set(static_cast<double>(segments_.size()));
  uint64_t total = 0;
  for (const auto& s : segments_) total += s->file_bytes();
  bytes_gauge_->Set(static_cast<double>(total));
  return Status::Ok();
}

Result<std::string> StoreLog::Install(std::string_view file, const SegmentName& name) {
  OKLOG_ASSIGN_OR_RETURN(std::string path, WriteSegmentImage(dir_, file, name, options_.env));
  OKLOG_RETURN_IF_ERROR(Add(path));
  return path;
}

// ---- replicas ----

namespace {

BatchId BatchOf(std::span<const std::string_view> records) {
  return {*Ulid::ParseCanonical(records.front().data()), *Ulid::ParseCanonical(records.back().data())};
}

}  // namespace

Result<uint64_t> StoreLog::WriteReplica(std::span<const std::string_view> records) {
  if (records.empty()) return uint64_t{0};
  OKLOG_ASSIGN_OR_RETURN(uint64_t n, WriteReplicaParts(records));
  holdings_->Add(BatchOf(records), records.size());
  return n;
}

Result<uint64_t> StoreLog::WriteReplicaParts(std::span<const std::string_view> records) {
  if (records.empty()) return uint64_t{0};
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<SegmentWriter> w, NewWriter());
  for (std::string_view rec : records) {
    Status s = w->Append(rec);
    if (!s.ok()) {
      w->Abandon();
      return s;
    }
  }
  Result<std::string> path = w->Finish();
  if (path.ok()) {
    OKLOG_RETURN_IF_ERROR(Add(*path));
    return uint64_t{records.size()};
  }
  w->Abandon();
  if (path.status().code() != Code::kAlreadyExists) return path.status();
  // LOW-HIGH exists (this batch, or one overlapping it, was stored before). One record: the file
  // LOW-LOW holds exactly that ULID, so it is there. More: write the halves, whose names differ.
  if (records.size() == 1) return uint64_t{1};
  const size_t mid = records.size() / 2;
  OKLOG_ASSIGN_OR_RETURN(uint64_t a, WriteReplicaParts(records.subspan(0, mid)));
  OKLOG_ASSIGN_OR_RETURN(uint64_t b, WriteReplicaParts(records.subspan(mid)));
  return a + b;
}

Result<uint64_t> StoreLog::InstallReplica(const SegmentImage& image, std::span<const std::string_view> records) {
  Result<std::string> path = Install(image.bytes, image.name);
  if (!path.ok()) {
    if (path.status().code() != Code::kAlreadyExists) return path.status();
    if (!SameFile(options_.env, dir_ + "/" + image.name.FileName(), image.bytes)) return WriteReplica(records);
  }
  holdings_->Add({image.name.low, image.name.high}, image.records);
  return image.records;
}

Result<uint64_t> StoreLog::InstallReplicaFile(std::string_view file) {
  Result<SegmentImageInfo> info = CheckSegmentImage(file);
  if (!info.ok()) return Status::Corruption("segment file rejected: " + info.status().message());
  return StoreCheckedFile(file, *info, /*note=*/true);
}

Result<uint64_t> StoreLog::InstallCopy(std::string_view file, const BatchClaims& claims) {
  Result<SegmentImageInfo> info = CheckSegmentImage(file);
  if (!info.ok()) return Status::Corruption("segment file rejected: " + info.status().message());
  const SegmentName& n = info->name;
  const uint64_t ms = options_.placement_bucket_ms;
  const uint64_t bucket = PlacementBucket(n.low, ms);
  bool one_bucket = PlacementBucket(n.high, ms) == bucket;
  for (const auto& [b, records] : claims) {
    const bool inside = b.low >= n.low && b.high <= n.high;
    one_bucket = one_bucket && PlacementBucket(b.low, ms) == bucket && PlacementBucket(b.high, ms) == bucket;
    if (!inside && !one_bucket)
      return Status::InvalidArgument("segment.copy: batch " + b.low.ToString() + "-" + b.high.ToString() +
                                     " lies neither in the file's range nor in its bucket");
  }
  OKLOG_ASSIGN_OR_RETURN(uint64_t stored, StoreCheckedFile(file, *info, /*note=*/false));
  holdings_->AddAll(claims);
  return stored;
}

Result<uint64_t> StoreLog::StoreCheckedFile(std::string_view file, const SegmentImageInfo& info, bool note) {
  Result<std::string> path = Install(file, info.name);
  const bool stored = path.ok() || (path.status().code() == Code::kAlreadyExists &&
                                    SameFile(options_.env, dir_ + "/" + info.name.FileName(), file));
  if (!path.ok() && !stored && path.status().code() != Code::kAlreadyExists) return path.status();
  if (stored) {
    if (note) holdings_->Add({info.name.low, info.name.high}, info.records);
    return info.records;
  }
  // The name is taken by a different file: store these records around it, as WriteReplica does.
  std::string text;
  OKLOG_RETURN_IF_ERROR(DecodeImageText(file, info.blocks, &text));
  ParseStats ps;
  std::vector<std::string_view> recs = ParseRecords(text, &ps);
  if (ps.invalid != 0 || recs.size() != info.records || SortRecords(&recs))
    return Status::Corruption("segment file rejected: its records do not match its index");
  return note ? WriteReplica(recs) : WriteReplicaParts(recs);
}

Status StoreLog::Remove(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.erase(std::remove_if(segments_.begin(), segments_.end(), [&](const auto& s) { return s->path() == path; }),
                    segments_.end());
    segments_gauge_->Set(static_cast<double>(segments_.size()));
  }
  DropExpiredHoldings();
  Status s = options_.env->RemoveFile(path);
  if (!s.ok() && s.code() != Code::kNotFound) return s;
  return Status::Ok();
}

void StoreLog::Quarantine(const std::string& path, const Status& why) {
  std::string qdir = dir_ + "/quarantine";
  (void)options_.env->CreateDirs(qdir);  // a failure shows in the rename below
  std::string to = qdir + "/" + BaseName(path);
  if (Status s = options_.env->RenameFile(path, to); !s.ok()) {
    Logger("store")->error("segment file={} failed verification ({}) and could not be moved aside: {}", path,
                           why.ToString(), s.ToString());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.erase(std::remove_if(segments_.begin(), segments_.end(), [&](const auto& s) { return s->path() == path; }),
                    segments_.end());
    segments_gauge_->Set(static_cast<double>(segments_.size()));
  }
  quarantined_->Inc();
  Logger("store")->error("segment file={} failed verification: {}; moved to {}", path, why.ToString(), to);
}

void StoreLog::MarkBlockBad(const SegmentReader& segment, size_t block, const Status& why) {
  if (block >= segment.blocks().size() || !segment.MarkBlockBad(block)) return;  // reported already
  const BlockInfo& b = segment.blocks()[block];
  blocks_quarantined_->Inc();
  Gap gap{b.first, b.last, b.records, {}, false};
  const bool known = gaps_->Has(gap.low, gap.high);  // found before this start, or healed since
  if (!known) {
    // The store no longer holds these batches whole: peers count one copy fewer and repair
    // copies them back (holdings.h); their return heals the gap.
    gap.batches = holdings_->Overlapping(gap.low, gap.high);
    holdings_->Drop(gap.batches);
    gaps_->Add(gap);
  }
  Logger("store")->error(
      "segment file={} block={} bytes={}..{} ulids={}..{} records={} is bad: {}; skipped (the rest of the segment stays "
      "queryable){}",
      segment.path(), block, b.offset, b.offset + b.compressed_size, b.first.ToString(), b.last.ToString(), b.records,
      why.ToString(),
      known ? "; its gap was known" : "; " + std::to_string(gap.batches.size()) + " batch(es) left the holdings for repair");
}

std::vector<Gap> StoreLog::UnhealedGaps(const Ulid& from, const Ulid& to) const {
  std::vector<Gap> gaps = gaps_->Unhealed(from, to);
  if (gaps.empty()) return gaps;
  if (gaps_->Heal([&](const BatchId& b) { return holdings_->Has(b); }) == 0) return gaps;
  return gaps_->Unhealed(from, to);
}

Status StoreLog::Swap(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                      const std::vector<std::string>& outputs) {
  std::vector<std::shared_ptr<const SegmentReader>> opened;
  for (const auto& path : outputs) {
    auto reader = SegmentReader::Open(path, options_.env);
    if (!reader.ok()) return reader.status();
    opened.push_back(std::move(reader).value());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.erase(std::remove_if(segments_.begin(), segments_.end(),
                                   [&](const auto& s) {
                                     return std::find(inputs.begin(), inputs.end(), s) != inputs.end();
                                   }),
                    segments_.end());
    for (auto& seg : opened) segments_.insert(std::upper_bound(segments_.begin(), segments_.end(), seg, ByRange), seg);
    segments_gauge_->Set(static_cast<double>(segments_.size()));
    uint64_t total = 0;
    for (const auto& s : segments_) total += s->file_bytes();
    bytes_gauge_->Set(static_cast<double>(total));
  }
  DropExpiredHoldings();
  return Status::Ok();
}

void StoreLog::DropExpiredHoldings() {
  // Under mu_ (then the holdings' own lock; never the other way round): a replica added in
  // between could otherwise be dropped by a floor computed before it arrived.
  std::lock_guard<std::mutex> lock(mu_);
  holdings_->DropBelow(segments_.empty() ? Ulid::Max() : segments_.front()->low());  // none left: all gone
}

size_t StoreLog::segment_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return segments_.size();
}

uint64_t StoreLog::file_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& s : segments_) total += s->file_bytes();
  return total;
}

}  // namespace oklog
