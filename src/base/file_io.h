// Reading the model directory's files without ever blocking. A plain open() of a FIFO waits
// for a writer, forever if none comes; these functions open with O_NONBLOCK and refuse
// anything but a regular file before reading a byte. (The prompt file is read elsewhere:
// `-f <(...)` is a pipe on purpose.)
#pragma once
#include <string>

namespace gpt2 {

// Opens `path` for reading if it is a regular file. Returns the descriptor (blocking mode
// restored, close-on-exec), or -1 with `why` set: strerror's text, "it is a directory" or
// "it is not a regular file (a FIFO, socket or device)".
int open_regular_file(const std::string& path, std::string* why);

// The whole regular file at `path`; false with `why` set as above (or the read error).
bool read_regular_file(const std::string& path, std::string* contents, std::string* why);

}  // namespace gpt2
