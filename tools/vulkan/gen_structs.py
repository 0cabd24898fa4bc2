#!/usr/bin/env python3
"""Generates the Vulkan structs QwenSharp.Gpu uses from vulkan_core.h, and a C program that prints their
real layout (sizeof, offsetof) as the C compiler sees it, for the layout test.

    python3 tools/vulkan/gen_structs.py /usr/include/vulkan/vulkan_core.h
    cc -I/usr/include tools/vulkan/layout.g.c -o /tmp/vk-layout && /tmp/vk-layout > tests/fixtures/vulkan/struct-layout.txt

The committed files come from Vulkan-Headers 1.4.309 (Debian 13's libvulkan-dev), which has VK_KHR_cooperative_matrix
(Debian 12's 1.3.239 does not).

Writes Gpu/Vulkan/VkStructs.g.cs, tools/vulkan/layout.g.c and tests/Gpu/StructLayouts.g.cs (the same sizes
and offsets as C# lays the structs out). Only what compute needs is listed here.
"""
import re
import sys
from pathlib import Path

STRUCTS = [
    "VkApplicationInfo", "VkInstanceCreateInfo",
    "VkPhysicalDeviceLimits", "VkPhysicalDeviceSparseProperties", "VkPhysicalDeviceProperties",
    "VkPhysicalDeviceProperties2", "VkPhysicalDeviceSubgroupProperties",
    "VkPhysicalDeviceFeatures", "VkPhysicalDeviceFeatures2",
    "VkPhysicalDeviceVulkan11Features", "VkPhysicalDeviceVulkan12Features", "VkPhysicalDeviceVulkan13Features",
    "VkMemoryType", "VkMemoryHeap", "VkPhysicalDeviceMemoryProperties", "VkPhysicalDeviceMemoryProperties2",
    "VkPhysicalDeviceMemoryBudgetPropertiesEXT",
    "VkExtent3D", "VkQueueFamilyProperties", "VkExtensionProperties",
    "VkDeviceQueueCreateInfo", "VkDeviceCreateInfo",
    "VkBufferCreateInfo", "VkMemoryRequirements", "VkMemoryAllocateInfo", "VkMemoryAllocateFlagsInfo",
    "VkBufferDeviceAddressInfo", "VkMappedMemoryRange",
    "VkShaderModuleCreateInfo", "VkPushConstantRange", "VkPipelineLayoutCreateInfo",
    "VkSpecializationMapEntry", "VkSpecializationInfo", "VkPipelineShaderStageCreateInfo",
    "VkComputePipelineCreateInfo",
    "VkCommandPoolCreateInfo", "VkCommandBufferAllocateInfo", "VkCommandBufferBeginInfo",
    "VkMemoryBarrier", "VkBufferCopy", "VkFenceCreateInfo", "VkSubmitInfo",
    "VkPhysicalDeviceCooperativeMatrixFeaturesKHR", "VkCooperativeMatrixPropertiesKHR",
]

# Enum values the backend uses, emitted as constants under their C names less the VK_ prefix.
CONSTANTS = [
    "VK_STRUCTURE_TYPE_APPLICATION_INFO", "VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO",
    "VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO", "VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO",
    "VK_STRUCTURE_TYPE_SUBMIT_INFO", "VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO", "VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE",
    "VK_STRUCTURE_TYPE_FENCE_CREATE_INFO", "VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO",
    "VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO", "VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO",
    "VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO", "VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO",
    "VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO", "VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO",
    "VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO", "VK_STRUCTURE_TYPE_MEMORY_BARRIER",
    "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2", "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2",
    "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES", "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES",
    "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES", "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES",
    "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2", "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT",
    "VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO", "VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO",
    "VK_PHYSICAL_DEVICE_TYPE_OTHER", "VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU", "VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU",
    "VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", "VK_PHYSICAL_DEVICE_TYPE_CPU",
    "VK_QUEUE_COMPUTE_BIT", "VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT", "VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT",
    "VK_MEMORY_PROPERTY_HOST_COHERENT_BIT", "VK_MEMORY_PROPERTY_HOST_CACHED_BIT", "VK_MEMORY_HEAP_DEVICE_LOCAL_BIT",
    "VK_BUFFER_USAGE_TRANSFER_SRC_BIT", "VK_BUFFER_USAGE_TRANSFER_DST_BIT", "VK_BUFFER_USAGE_STORAGE_BUFFER_BIT",
    "VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT", "VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT",
    "VK_SHADER_STAGE_COMPUTE_BIT", "VK_SUBGROUP_FEATURE_BASIC_BIT", "VK_SUBGROUP_FEATURE_ARITHMETIC_BIT", "VK_PIPELINE_BIND_POINT_COMPUTE", "VK_COMMAND_BUFFER_LEVEL_PRIMARY",
    "VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT", "VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT",
    "VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT", "VK_PIPELINE_STAGE_TRANSFER_BIT", "VK_PIPELINE_STAGE_HOST_BIT",
    "VK_ACCESS_SHADER_READ_BIT", "VK_ACCESS_SHADER_WRITE_BIT", "VK_ACCESS_TRANSFER_READ_BIT",
    "VK_ACCESS_TRANSFER_WRITE_BIT", "VK_ACCESS_HOST_READ_BIT", "VK_ACCESS_HOST_WRITE_BIT",
    "VK_SUCCESS", "VK_TIMEOUT", "VK_NOT_READY", "VK_INCOMPLETE", "VK_ERROR_OUT_OF_HOST_MEMORY",
    "VK_ERROR_OUT_OF_DEVICE_MEMORY", "VK_ERROR_INITIALIZATION_FAILED", "VK_ERROR_DEVICE_LOST",
    "VK_ERROR_MEMORY_MAP_FAILED", "VK_ERROR_LAYER_NOT_PRESENT", "VK_ERROR_EXTENSION_NOT_PRESENT",
    "VK_ERROR_FEATURE_NOT_PRESENT", "VK_ERROR_INCOMPATIBLE_DRIVER", "VK_ERROR_TOO_MANY_OBJECTS",
    "VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR", "VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR",
    "VK_COMPONENT_TYPE_FLOAT16_KHR", "VK_COMPONENT_TYPE_FLOAT32_KHR", "VK_SCOPE_SUBGROUP_KHR",
]

PRIMITIVES = {
    "uint32_t": "uint", "int32_t": "int", "uint64_t": "ulong", "int64_t": "long", "size_t": "nuint",
    "float": "float", "char": "byte", "uint8_t": "byte", "VkBool32": "uint", "VkDeviceSize": "ulong",
    "VkDeviceAddress": "ulong", "VkFlags": "uint", "VkFlags64": "ulong", "VkSampleMask": "uint",
}


def main():
    header = Path(sys.argv[1]).read_text()
    root = Path(__file__).resolve().parents[2]
    defines = {m[1]: int(m[2].rstrip("U")) for m in re.finditer(r"#define (VK_\w+)\s+(\d+U?)\s*$", header, re.M)}
    dispatchable = set(re.findall(r"^VK_DEFINE_HANDLE\((\w+)\)", header, re.M))
    non_dispatchable = set(re.findall(r"^VK_DEFINE_NON_DISPATCHABLE_HANDLE\((\w+)\)", header, re.M))
    enums = set(re.findall(r"^typedef enum (\w+) \{", header, re.M))
    flags = {m[2]: m[1] for m in re.finditer(r"^typedef (VkFlags|VkFlags64) (\w+);", header, re.M)}
    bodies = {m[1]: m[2] for m in re.finditer(r"^typedef struct (\w+) \{\n(.*?)\n\} \1;", header, re.M | re.S)}

    def cs_type(c_type):
        if c_type in PRIMITIVES:
            return PRIMITIVES[c_type]
        if c_type in flags:
            return PRIMITIVES[flags[c_type]]
        if c_type in enums:
            return "int"
        if c_type in dispatchable:
            return "nint"
        if c_type in non_dispatchable:
            return "ulong"
        if c_type in STRUCTS:
            return c_type
        raise SystemExit(f"no C# type for {c_type}")

    out = ["// <auto-generated> by tools/vulkan/gen_structs.py from vulkan_core.h; do not edit. </auto-generated>",
           "#pragma warning disable CA1051, CA1815, CA1707, IDE1006",
           "using System.Runtime.CompilerServices;",
           "using System.Runtime.InteropServices;", "", "namespace QwenSharp.Gpu.Vulkan;", ""]
    inline_arrays = {}
    measure = ["// <auto-generated> by tools/vulkan/gen_structs.py; do not edit. </auto-generated>",
               "using QwenSharp.Gpu.Vulkan;", "", "namespace QwenSharp.Tests.Gpu;", "",
               "/// <summary>Each generated struct's size and field offsets as C# lays them out.</summary>",
               "internal static unsafe class StructLayouts", "{",
               "    public static Dictionary<string, int> Measure()", "    {",
               "        var layout = new Dictionary<string, int>();"]
    c = ["// Generated by tools/vulkan/gen_structs.py: prints each struct's size and each field's offset.",
         "#include <stddef.h>", "#include <stdio.h>", "#include <vulkan/vulkan_core.h>", "int main(void) {"]
    for name in STRUCTS:
        out.append("[StructLayout(LayoutKind.Sequential)]")
        out.append(f"internal unsafe struct {name}")
        out.append("{")
        c.append(f'    printf("{name} %zu\\n", sizeof({name}));')
        measure += ["        {", f"            {name} s = default;", f'            layout["{name}"] = sizeof({name});']
        for line in bodies[name].splitlines():
            line = line.strip().rstrip(";")
            if not line or line.startswith("//"):    # newer headers comment some fields (enabledLayerCount is deprecated)
                continue
            m = re.match(r"(?:const\s+)?(\w+)((?:\s*\*\s*(?:const\s*)?)*)\s+(\w+)(?:\[(\w+)\])?$", line)
            if not m:
                raise SystemExit(f"{name}: cannot read field '{line}'")
            c_type, stars, field, count = m[1], m[2].strip(), m[3], m[4]
            cs_name = field[0].upper() + field[1:]
            if stars:
                t = "nint"
            else:
                t = cs_type(c_type)
            if count:
                n = int(count) if count.isdigit() else defines[count]
                if t in STRUCTS:
                    array = f"{t}Array{n}"
                    inline_arrays[array] = (t, n)
                    out.append(f"    public {array} {cs_name};")
                else:
                    out.append(f"    public fixed {t} {cs_name}[{n}];")
            else:
                out.append(f"    public {t} {cs_name};")
            c.append(f'    printf("{name}.{cs_name} %zu\\n", offsetof({name}, {field}));')
            address = f"(byte*)s.{cs_name}" if count and t not in STRUCTS else f"(byte*)&s.{cs_name}"
            measure.append(f'            layout["{name}.{cs_name}"] = (int)({address} - (byte*)&s);')
        out.append("}")
        out.append("")
        measure.append("        }")
    for array, (t, n) in inline_arrays.items():
        out += [f"[InlineArray({n})]", f"internal struct {array}", "{", f"    private {t} _element0;", "}", ""]
    c += ["    return 0;", "}", ""]
    values = {m[1]: m[2] for m in re.finditer(r"^\s+(VK_\w+) = (-?\d+|0x[0-9A-Fa-f]+),?$", header, re.M)}
    out += ["/// <summary>The enum values of vulkan_core.h the backend uses, under their C names less the VK_ prefix.</summary>",
            "internal static class Vk", "{"]
    for name in CONSTANTS:
        out.append(f"    public const int {name[3:]} = {values[name]};")
    out += ["}", ""]
    (root / "Gpu" / "Vulkan" / "VkStructs.g.cs").write_text("\n".join(out).rstrip() + "\n")
    (root / "tools" / "vulkan" / "layout.g.c").write_text("\n".join(c))
    measure += ["", "        return layout;", "    }", "}", ""]
    (root / "tests" / "Gpu" / "StructLayouts.g.cs").write_text("\n".join(measure))


if __name__ == "__main__":
    main()
