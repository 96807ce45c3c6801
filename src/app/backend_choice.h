// Choosing a backend: the one place that knows both of them, so it sits above src/cpu and
// src/cuda (the engine only sees the Backend interface they implement).
#pragma once
#include <memory>
#include <string>

#include "engine/backend.h"

namespace gpt2 {

// Makes the backend `options.device` asks for. Auto: CUDA when built with it and a device is
// usable, else the CPU; `note` receives a one-line explanation of a fallback. Throws
// gpt2::Error for --device cuda without a usable device.
std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options,
                                      std::string* note);

}  // namespace gpt2
