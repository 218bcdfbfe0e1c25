export { R1VError, type R1VErrorCode } from './core/errors.js';
export { devices, buildInfo, type DeviceInfo, type CpuDeviceInfo, type CudaDeviceInfo, type DeviceId } from './core/device.js';
export { Engine, type EngineOptions, type MemoryStats, type CpuGemmBackend } from './core/engine.js';
export { Tensor, type DType, type FloatDType, type HostArray } from './core/tensor.js';
export * as ops from './ops/index.js';
export {
  SafetensorsFile, writeSafetensors, type SafetensorsDType, type SafetensorsTensor, type SafetensorsData,
  type SafetensorsEntry, type SafetensorsSource, type SafetensorsWriteTensor,
} from './io/safetensors.js';
export { Checkpoint, openCheckpoint, writeCheckpoint, SINGLE_FILE, INDEX_FILE, type WriteCheckpointOptions } from './io/checkpoint.js';
export { bf16ToF32, f32ToBf16, f16ToF32, f32ToF16, toFloat32 } from './io/half.js';
export {
  parseModelConfig, type ModelConfig, type VisionConfig, type ConnectorConfig, type ImageTilingConfig,
  type LanguageConfig, type ParseModelConfigOptions,
} from './model/config.js';
export {
  Tokenizer, IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN, IMAGE_PLACEHOLDER, DEFAULT_TOKENS_PER_TILE,
  type TokenizerLoadOptions, type AddedTokenSpec, type ChatMessage, type ChatContentPart,
  type ChatTemplateOptions, type EncodeOptions, type DecodeOptions,
} from './data/tokenizer.js';
export {
  ImageProcessor, chooseTileGrid, IMAGENET_MEAN, IMAGENET_STD,
  type ImageInput, type RawImage, type TilingOptions, type ImageProcessorOptions, type ProcessedImage,
} from './data/image.js';
export { IGNORE_INDEX, packBatch, responseTargets, type Batch, type PackSequence } from './data/batch.js';
export {
  VisionLanguageModel, ForwardResult, type ForwardOptions, type TokenStatsResult, type BackwardInput,
  type ModelOptions, type CreateOptions, type LoadOptions, type SaveOptions, type TrainableSelection,
} from './model/model.js';
export { AdamW, type AdamWOptions, type LoadStateOptions, type StepOptions, type StepResult } from './optim/adamw.js';
export type { ParameterInfo, ModulePart, ParameterKind } from './model/parameters.js';
export { KvCache, type PrefillCopy } from './model/kv-cache.js';
export { Fence } from './core/fence.js';
export {
  generate, type GeneratePrompt, type GenerateOptions, type GenerateProgress, type Generation, type GenerateResult,
} from './rollout/generate.js';
