"""What the container release's own sources accept, read from them once (2026-12) and written here, so
that the contract tier checks the project against them without fetching anything.

The release is 26.08 (``structbert_export/container_release.json``). Where the public sources read
have no r26.08 branch of a component, the nearest published state is named; each list below was
also compared with r24.10 (the release the embedded 2.51 server matches) and the difference noted.
"""

from __future__ import annotations

# triton-inference-server/onnxruntime_backend src/onnxruntime.cc, ModelInstanceState's LoadModel: the
# TensorRT accelerator keys it accepts (any other key fails the model's load with "unknown parameter
# ... is provided for TensorRT Execution Accelerator"). Read on r26.06 and on main of 2026-06-29
# (no r26.08 branch is published in the sources read); identical to r24.10.
TENSORRT_KEYS = frozenset({
    "precision_mode", "max_workspace_size_bytes", "trt_max_partition_iterations", "trt_min_subgraph_size",
    "int8_calibration_table_name", "int8_use_native_calibration_table", "trt_dla_enable", "trt_dla_core",
    "trt_engine_cache_enable", "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_dump_subgraphs",
    "trt_force_sequential_engine_build", "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable", "trt_timing_cache_path", "trt_force_timing_cache", "trt_detailed_build_log",
    "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level",
    "trt_auxiliary_streams", "trt_tactic_sources", "trt_extra_plugin_lib_paths", "trt_profile_min_shapes",
    "trt_profile_max_shapes", "trt_profile_opt_shapes", "trt_cuda_graph_enable", "trt_dump_ep_context_model",
    "trt_ep_context_file_path", "trt_ep_context_embed_mode",
})

# Model parameters the same file reads as session, run or CUDA-provider options (ModelState and
# ModelInstanceState); any other key is silently ignored (that is how --intra-op-threads once went
# nowhere). r26.06 / main of 2026-06-29; against r24.10 it adds
# ``session.use_device_allocator_for_initializers`` (a session config entry).
SESSION_KEYS = frozenset({
    "intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena", "enable_mem_pattern",
    "memory.enable_memory_arena_shrinkage", "session.use_device_allocator_for_initializers",
    "arena_extend_strategy", "cudnn_conv_algo_search", "gpu_mem_limit", "do_copy_in_default_stream",
})

# triton-inference-server/python_backend r26.07 (the newest branch published; main of 2026-07-17 is
# the same here): the names ``triton_python_backend_utils`` gives a model, from src/pb_stub.cc's
# embedded module and src/resources/triton_python_backend_utils.py. Identical to r25.01 (the oldest
# branch published) for every name this project uses; r26.07 adds ``is_ready`` and ``cancel``.
PB_UTILS = frozenset({
    "InferenceRequest", "InferenceResponse", "Logger", "MetricFamily", "ModelConfig", "PreferredMemory",
    "Tensor", "TritonError", "TritonModelException", "TRITONSERVER_MEMORY_CPU", "TRITONSERVER_MEMORY_GPU",
    "get_input_tensor_by_name", "get_output_tensor_by_name", "get_input_config_by_name",
    "get_output_config_by_name", "triton_string_to_numpy", "triton_to_numpy_type", "numpy_to_triton_type",
    "serialize_byte_tensor", "deserialize_bytes_tensor", "using_decoupled_model_transaction_policy",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL", "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
})
# TritonError's codes (pb_stub.cc binds each as a class attribute)
PB_ERROR_CODES = frozenset({"UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
                            "ALREADY_EXISTS", "CANCELLED"})

# triton-inference-server/core r26.06 src/ (metrics.cc, metric_model_reporter.cc): every metric family
# the server exports. Against r24.10 it adds nv_inference_first_response_histogram_ms and
# nv_model_load_duration_secs and renames or removes none, so a query that works on the embedded
# 2.51 server works on the release.
METRICS = frozenset({
    "nv_cache_hit_duration_per_model", "nv_cache_hit_summary_per_model", "nv_cache_miss_duration_per_model",
    "nv_cache_miss_summary_per_model", "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model",
    "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes", "nv_cpu_utilization", "nv_energy_consumption",
    "nv_gpu_memory_total_bytes", "nv_gpu_memory_used_bytes", "nv_gpu_power_limit", "nv_gpu_power_usage",
    "nv_gpu_utilization", "nv_inference_compute_infer_duration_us", "nv_inference_compute_infer_summary_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_input_summary_us",
    "nv_inference_compute_output_duration_us", "nv_inference_compute_output_summary_us", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_first_response_histogram_ms", "nv_inference_pending_request_count",
    "nv_inference_queue_duration_us", "nv_inference_queue_summary_us", "nv_inference_request_duration_us",
    "nv_inference_request_failure", "nv_inference_request_success", "nv_inference_request_summary_us",
    "nv_model_load_duration_secs", "nv_pinned_memory_pool_total_bytes", "nv_pinned_memory_pool_used_bytes",
})

# The first release whose /v2/health/ready fails (with --strict-readiness=true) once a Python-backend
# stub has died: core#473 (server#8604), on python_backend#423's TRITONBACKEND_ModelInstanceReady
# (26.01); both are on core r26.06 / python_backend r26.07. Before it (the embedded 2.51 server
# included) ready stays 200, and only structbert_serving.stub_health notices.
READY_SEES_DEAD_STUBS = (26, 4)
