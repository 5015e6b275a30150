/*
 * Compiles one SPIR-V compute shader through the Vulkan driver and prints what the driver says
 * about the machine code it made (VK_KHR_pipeline_executable_properties): registers, spills,
 * instruction counts, and any internal representation it offers. Dawn hides its pipelines, so
 * benchmarks/webgpu-shader-stats.sh feeds this the SPIR-V that Dawn's dump_shaders toggle logged
 * for our WGSL kernels: the only way to see, for example, how many registers a tile shape costs
 * on the NVIDIA driver, where Vulkan compute has no profiler on the GPU host.
 *
 *   vk-shader-stats SHADER.spv ENTRY BINDINGS
 *
 * BINDINGS lists set 0's bindings as U<n> (uniform buffer) or S<n> (storage buffer), comma-separated.
 * The loader is opened at run time (libvulkan.so.1), so building needs only the headers.
 * Build: cc -O1 -I<vulkan headers> -o vk-shader-stats vk-shader-stats.c -ldl
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

static PFN_vkGetInstanceProcAddr gipa;
#define LOAD(inst, name) PFN_##name name = (PFN_##name)gipa(inst, #name)
#define CHECK(call)                                                           \
  do {                                                                        \
    VkResult r_ = (call);                                                     \
    if (r_ != VK_SUCCESS) {                                                   \
      fprintf(stderr, "vk-shader-stats: %s failed: VkResult %d\n", #call, r_); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

static void *readFile(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "vk-shader-stats: cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  *size = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  void *data = malloc(*size);
  if (fread(data, 1, *size, f) != *size) exit(1);
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: vk-shader-stats SHADER.spv ENTRY BINDINGS (e.g. U0,S1,S2)\n");
    return 2;
  }
  void *lib = dlopen("libvulkan.so.1", RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "vk-shader-stats: no Vulkan loader: %s\n", dlerror());
    return 1;
  }
  gipa = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
  LOAD(NULL, vkCreateInstance);
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3};
  VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
  VkInstance inst;
  CHECK(vkCreateInstance(&ici, NULL, &inst));
  LOAD(inst, vkEnumeratePhysicalDevices);
  LOAD(inst, vkGetPhysicalDeviceProperties);
  LOAD(inst, vkGetPhysicalDeviceFeatures2);
  LOAD(inst, vkGetPhysicalDeviceQueueFamilyProperties);
  LOAD(inst, vkCreateDevice);
  LOAD(inst, vkGetDeviceProcAddr);

  // The first NVIDIA device, else the first device.
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(inst, &n, NULL);
  if (n == 0) {
    fprintf(stderr, "vk-shader-stats: no Vulkan device\n");
    return 1;
  }
  VkPhysicalDevice devs[16];
  if (n > 16) n = 16;
  vkEnumeratePhysicalDevices(inst, &n, devs);
  VkPhysicalDevice pd = devs[0];
  VkPhysicalDeviceProperties props;
  for (uint32_t i = 0; i < n; i++) {
    vkGetPhysicalDeviceProperties(devs[i], &props);
    if (props.vendorID == 0x10de) {
      pd = devs[i];
      break;
    }
  }
  vkGetPhysicalDeviceProperties(pd, &props);
  printf("device: %s\n", props.deviceName);

  // Enable every feature the device has (Dawn's SPIR-V uses the Vulkan memory model, subgroups, ...).
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR exec = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  VkPhysicalDeviceVulkan13Features f13 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, .pNext = &exec};
  VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f13};
  VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
  vkGetPhysicalDeviceFeatures2(pd, &features);
  if (!exec.pipelineExecutableInfo) {
    fprintf(stderr, "vk-shader-stats: the device does not offer VK_KHR_pipeline_executable_properties\n");
    return 1;
  }
  uint32_t qn = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, NULL);
  VkQueueFamilyProperties qf[32];
  if (qn > 32) qn = 32;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, qf);
  uint32_t family = 0;
  for (uint32_t i = 0; i < qn; i++)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
      family = i;
      break;
    }
  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio};
  const char *ext[] = {"VK_KHR_pipeline_executable_properties"};
  VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &features, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci, .enabledExtensionCount = 1, .ppEnabledExtensionNames = ext};
  VkDevice dev;
  CHECK(vkCreateDevice(pd, &dci, NULL, &dev));
#define DLOAD(name) PFN_##name name = (PFN_##name)vkGetDeviceProcAddr(dev, #name)
  DLOAD(vkCreateShaderModule);
  DLOAD(vkCreateDescriptorSetLayout);
  DLOAD(vkCreatePipelineLayout);
  DLOAD(vkCreateComputePipelines);
  DLOAD(vkGetPipelineExecutablePropertiesKHR);
  DLOAD(vkGetPipelineExecutableStatisticsKHR);
  DLOAD(vkGetPipelineExecutableInternalRepresentationsKHR);
  DLOAD(vkCreatePipelineCache);
  DLOAD(vkGetPipelineCacheData);

  size_t size;
  uint32_t *code = readFile(argv[1], &size);
  VkShaderModuleCreateInfo smci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = size, .pCode = code};
  VkShaderModule module;
  CHECK(vkCreateShaderModule(dev, &smci, NULL, &module));

  // Set 0's bindings from the command line.
  VkDescriptorSetLayoutBinding binds[32];
  uint32_t nb = 0;
  for (char *tok = strtok(argv[3], ","); tok && nb < 32; tok = strtok(NULL, ",")) {
    binds[nb] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)atoi(tok + 1), .descriptorType = tok[0] == 'U' ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    nb++;
  }
  VkDescriptorSetLayoutCreateInfo dslci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = nb, .pBindings = binds};
  VkDescriptorSetLayout dsl;
  CHECK(vkCreateDescriptorSetLayout(dev, &dslci, NULL, &dsl));
  VkPipelineLayoutCreateInfo plci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &dsl};
  VkPipelineLayout layout;
  CHECK(vkCreatePipelineLayout(dev, &plci, NULL, &layout));
  VkComputePipelineCreateInfo cpci = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR | VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR,
      .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = module, .pName = argv[2]},
      .layout = layout,
  };
  VkPipeline pipeline;
  // VK_SHADER_STATS_CACHE=FILE: the pipeline is built through a pipeline cache whose data (on
  // NVIDIA, the machine code with the driver's header) is written to FILE, for a disassembler.
  const char *cachePath = getenv("VK_SHADER_STATS_CACHE");
  VkPipelineCache cache = VK_NULL_HANDLE;
  if (cachePath) {
    VkPipelineCacheCreateInfo pcci = {VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    CHECK(vkCreatePipelineCache(dev, &pcci, NULL, &cache));
  }
  CHECK(vkCreateComputePipelines(dev, cache, 1, &cpci, NULL, &pipeline));
  if (cachePath) {
    size_t size = 0;
    CHECK(vkGetPipelineCacheData(dev, cache, &size, NULL));
    void *data = malloc(size);
    CHECK(vkGetPipelineCacheData(dev, cache, &size, data));
    FILE *f = fopen(cachePath, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
      fprintf(stderr, "vk-shader-stats: cannot write %s\n", cachePath);
      exit(1);
    }
    fclose(f);
  }

  VkPipelineInfoKHR pinfo = {.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = pipeline};
  uint32_t ne = 0;
  CHECK(vkGetPipelineExecutablePropertiesKHR(dev, &pinfo, &ne, NULL));
  VkPipelineExecutablePropertiesKHR eprops[8];
  if (ne > 8) ne = 8;
  for (uint32_t i = 0; i < ne; i++) eprops[i] = (VkPipelineExecutablePropertiesKHR){.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR};
  CHECK(vkGetPipelineExecutablePropertiesKHR(dev, &pinfo, &ne, eprops));
  for (uint32_t e = 0; e < ne; e++) {
    printf("executable %u: %s (%s), subgroup size %u\n", e, eprops[e].name, eprops[e].description, eprops[e].subgroupSize);
    VkPipelineExecutableInfoKHR einfo = {.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, .pipeline = pipeline, .executableIndex = e};
    uint32_t ns = 0;
    CHECK(vkGetPipelineExecutableStatisticsKHR(dev, &einfo, &ns, NULL));
    VkPipelineExecutableStatisticKHR *stats = calloc(ns ? ns : 1, sizeof *stats);
    for (uint32_t i = 0; i < ns; i++) stats[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
    CHECK(vkGetPipelineExecutableStatisticsKHR(dev, &einfo, &ns, stats));
    for (uint32_t i = 0; i < ns; i++) {
      printf("  %s: ", stats[i].name);
      switch (stats[i].format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: printf("%s", stats[i].value.b32 ? "true" : "false"); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: printf("%lld", (long long)stats[i].value.i64); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: printf("%llu", (unsigned long long)stats[i].value.u64); break;
        default: printf("%g", stats[i].value.f64); break;
      }
      printf("  (%s)\n", stats[i].description);
    }
    // Internal representations (some drivers give their assembly); printed in full when asked.
    uint32_t nr = 0;
    if (vkGetPipelineExecutableInternalRepresentationsKHR(dev, &einfo, &nr, NULL) == VK_SUCCESS && nr > 0) {
      VkPipelineExecutableInternalRepresentationKHR *reps = calloc(nr, sizeof *reps);
      for (uint32_t i = 0; i < nr; i++) reps[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR;
      vkGetPipelineExecutableInternalRepresentationsKHR(dev, &einfo, &nr, reps);
      for (uint32_t i = 0; i < nr; i++) {
        reps[i].pData = malloc(reps[i].dataSize + 1);
        ((char *)reps[i].pData)[reps[i].dataSize] = 0;
      }
      vkGetPipelineExecutableInternalRepresentationsKHR(dev, &einfo, &nr, reps);
      for (uint32_t i = 0; i < nr; i++) {
        printf("  representation %s (%s): %zu bytes%s\n", reps[i].name, reps[i].description, reps[i].dataSize, reps[i].isText ? ", text" : "");
        if (reps[i].isText && getenv("VK_SHADER_STATS_DUMP")) printf("%s\n", (char *)reps[i].pData);
      }
    }
  }
  return 0;
}
