#include "segments/line_log.h"

#include "common/log.h"
#include "common/metrics.h"

namespace oklog {

Result<std::unique_ptr<LineLog>> LineLog::Open(Env* env, std::string path, Counter* errors,
                                               const std::function<bool(std::string_view)>& line) {
  std::unique_ptr<LineLog> log(new LineLog(env, std::move(path), errors));
  std::string text;
  Status read = AppendFileContents(env, log->path_, &text);
  if (!read.ok() && read.code() != Code::kNotFound) return read;
  log->existed_ = read.ok();
  size_t bad = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      ++bad;  // torn last line
      break;
    }
    if (!line(std::string_view(text.data() + pos, nl - pos))) ++bad;
    pos = nl + 1;
  }
  if (bad) {
    errors->Inc(bad);
    Logger("store")->warn("{}: skipped {} unreadable line(s)", log->path_, bad);
  }
  return log;
}

void LineLog::Rewrite(const std::string& live, const char* what) {
  if (live.empty() && !existed_) return;
  const std::string tmp = path_ + ".tmp";
  Result<std::unique_ptr<WritableFile>> f = env_->NewWritableFile(tmp);
  Status s = f.ok() ? (*f)->Append(live) : f.status();
  if (s.ok()) s = env_->RenameFile(tmp, path_);
  if (s.ok()) {
    file_ = std::move(f).value();
    return;
  }
  (void)env_->RemoveFile(tmp);
  failed_ = true;
  errors_->Inc();
  Logger("store")->warn("{}: cannot rewrite: {}; this run's {} are kept in memory only", path_, s.ToString(), what);
}

void LineLog::Append(const std::string& line, const char* if_lost) {
  if (failed_) return;
  if (file_ == nullptr) {
    Result<std::unique_ptr<WritableFile>> f = env_->NewWritableFile(path_);  // the first line
    if (!f.ok()) {
      errors_->Inc();
      Logger("store")->warn("{}: {} ({})", path_, f.status().ToString(), if_lost);
      return;
    }
    file_ = std::move(f).value();
  }
  if (Status s = file_->Append(line); !s.ok()) {
    errors_->Inc();
    Logger("store")->warn("{}: {} ({})", path_, s.ToString(), if_lost);
  }
}

}  // namespace oklog
