/*
 * Test-only ORT plugin-EP library that wraps the real OpenVINO plugin so that it also
 * claims a non-Intel x86 CPU.
 *
 * Why: onnxruntime-ep-openvino's factory (OpenVINOEpPluginFactory::GetSupportedDevices)
 * skips every OrtHardwareDevice whose PCI vendor id is not 0x8086 ("Not an Intel
 * Device"). The CI machine's CPU is an AMD EPYC (ORT reports vendor 0x1022), so the
 * plugin claims nothing, although OpenVINO's CPU plugin itself runs on any x86-64 CPU
 * with AVX2 (it reports FULL_DEVICE_NAME "AMD EPYC" and bf16 capability here).
 *
 * What it does: exports CreateEpFactories/ReleaseEpFactory; loads the real plugin
 * (REAL_PLUGIN, fixed at compile time), lets it create its factories, and wraps each
 * factory's GetSupportedDevices. While the real GetSupportedDevices runs, a CPU device
 * with AMD's vendor id (0x1022) reads as 0x8086; the field is restored right after.
 * Nothing else changes: the model is compiled and run by the real OpenVINO CPU plugin,
 * and ORT still reports the device as AMD.
 *
 * Layouts relied on (stable since ORT 1.22): struct OrtEpFactory starts with
 * {uint32_t ort_version_supported; GetName; GetVendor; GetSupportedDevices; ...}
 * (include/onnxruntime/core/session/onnxruntime_ep_c_api.h) and struct
 * OrtHardwareDevice starts with {OrtHardwareDeviceType type; uint32_t vendor_id; ...}
 * (onnxruntime/core/session/abi_devices.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef REAL_PLUGIN
#error "compile with -DREAL_PLUGIN='\"/path/to/libonnxruntime_providers_openvino_plugin.so\"'"
#endif

typedef void OrtStatus;
typedef struct OrtEpFactory OrtEpFactory;
typedef OrtStatus *(*SupportedFn)(OrtEpFactory *, const void *const *, size_t, void **, size_t, size_t *);
struct OrtEpFactory {
  uint32_t ort_version_supported;
  void *GetName;
  void *GetVendor;
  SupportedFn GetSupportedDevices;
};
typedef OrtStatus *(*CreateFn)(const char *, const void *, const void *, OrtEpFactory **, size_t, size_t *);
typedef OrtStatus *(*ReleaseFn)(OrtEpFactory *);

enum { MAX_FACTORIES = 32, MAX_DEVICES = 64, CPU_TYPE = 0, AMD = 0x1022, INTEL = 0x8086 };
static OrtEpFactory *factories_seen[MAX_FACTORIES];
static SupportedFn real_supported[MAX_FACTORIES];
static size_t n_seen;
static void *real_lib;

static OrtStatus *supported_as_intel(OrtEpFactory *f, const void *const *devices, size_t n, void **out, size_t max, size_t *num) {
  SupportedFn real = NULL;
  for (size_t i = 0; i < n_seen; i++)
    if (factories_seen[i] == f) real = real_supported[i];
  uint32_t saved[MAX_DEVICES];
  size_t m = n < MAX_DEVICES ? n : MAX_DEVICES;
  for (size_t i = 0; i < m; i++) {
    uint32_t *dev = (uint32_t *)devices[i];
    saved[i] = dev[1];
    if (dev[0] == CPU_TYPE && dev[1] == AMD) dev[1] = INTEL;
  }
  OrtStatus *status = real(f, devices, n, out, max, num);
  for (size_t i = 0; i < m; i++) ((uint32_t *)devices[i])[1] = saved[i];
  return status;
}

OrtStatus *CreateEpFactories(const char *name, const void *api_base, const void *logger, OrtEpFactory **out, size_t max, size_t *num) {
  real_lib = dlopen(REAL_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  if (!real_lib) {
    fprintf(stderr, "ov_vendor_shim: %s\n", dlerror());
    *num = 0;
    return NULL;
  }
  CreateFn create = (CreateFn)dlsym(real_lib, "CreateEpFactories");
  OrtStatus *status = create(name, api_base, logger, out, max, num);
  if (status) return status;
  for (size_t i = 0; i < *num && n_seen < MAX_FACTORIES; i++, n_seen++) {
    factories_seen[n_seen] = out[i];
    real_supported[n_seen] = out[i]->GetSupportedDevices;
    out[i]->GetSupportedDevices = supported_as_intel;
  }
  return NULL;
}

OrtStatus *ReleaseEpFactory(OrtEpFactory *f) {
  return ((ReleaseFn)dlsym(real_lib, "ReleaseEpFactory"))(f);
}
