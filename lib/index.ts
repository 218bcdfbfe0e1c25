export { R1VError, type R1VErrorCode } from './core/errors.js';
export { devices, buildInfo, type DeviceInfo, type CpuDeviceInfo, type CudaDeviceInfo, type DeviceId } from './core/device.js';
export { Engine, type EngineOptions, type MemoryStats, type CpuGemmBackend } from './core/engine.js';
export { Tensor, type DType, type FloatDType, type HostArray } from './core/tensor.js';
export * as ops from './ops/index.js';
export { Communicator, type CommunicatorOptions, type ReduceOp, type StartedCollective } from './ops/collectives.js';
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
  Tokenizer, packagedTokenizerDir, tokenizerDir, IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN, IMAGE_PLACEHOLDER, DEFAULT_TOKENS_PER_TILE,
  type TokenizerLoadOptions, type AddedTokenSpec, type ChatMessage, type ChatContentPart,
  type ChatTemplateOptions, type EncodeOptions, type DecodeOptions,
} from './data/tokenizer.js';
export {
  ImageProcessor, chooseTileGrid, IMAGENET_MEAN, IMAGENET_STD,
  type ImageInput, type RawImage, type TilingOptions, type ImageProcessorOptions, type ProcessedImage,
} from './data/image.js';
export { IGNORE_INDEX, packBatch, responseTargets, type Batch, type PackSequence } from './data/batch.js';
export { Dataset, type DatasetRow, type SkippedRow } from './data/dataset.js';
export { smallTokenizerFiles, writeSmallTokenizer, CHATML_TEMPLATE, type SmallTokenizerOptions, type SmallTokenizerFiles } from './data/small-tokenizer.js';
export {
  VisionLanguageModel, ForwardResult, type ForwardOptions, type TokenStatsResult, type BackwardInput, type BackwardOptions,
  type ModelOptions, type CreateOptions, type LoadOptions, type SaveOptions, type TrainableSelection,
} from './model/model.js';
export { AdamW, type AdamWOptions, type LoadStateOptions, type StepOptions, type StepResult } from './optim/adamw.js';
export { learningRateSchedule, type LearningRateSchedule, type ScheduleKind, type ScheduleOptions } from './optim/schedule.js';
export type { ParameterInfo, ModulePart, ParameterKind } from './model/parameters.js';
export { KvCache, type PrefillCopy } from './model/kv-cache.js';
export { Fence } from './core/fence.js';
export * as rl from './rl/index.js';
export {
  extractAnswer, formatScore, answersEquivalent, formatReward, accuracyReward, r1v3Rewards, scoreSamples, validateRewards,
  DEFAULT_END_MARKERS, DEFAULT_RELATIVE_TOLERANCE,
  type ExtractAnswerOptions, type FormatOptions, type EquivalenceOptions, type FormatRewardOptions,
  type AccuracyRewardOptions, type R1V3RewardOptions, type Reward, type RewardFn, type RewardSample, type RewardRow,
  type ScoreOptions, type SampleScore, type RewardFailures, type ScoreResult,
} from './rewards/index.js';
export {
  generate, type GeneratePrompt, type GenerateOptions, type GenerateProgress, type Generation, type GenerateResult,
} from './rollout/generate.js';
export {
  loadTrainConfig, parseTrainConfig, trainConfigSchema, configKeys, type ConfigKey, type TrainConfig, type TrainConfigInput, type StageConfig,
} from './train/config.js';
export { Trainer, type TrainerOptions, type TrainSummary } from './train/trainer.js';
export { CheckpointStore, checkpointDirName, latestCheckpointDir, type CheckpointStoreOptions, type CheckpointInfo, type CheckpointWriter } from './train/checkpoints.js';
export { rollout, score, perToken, advantages, informativeGroups, overlongPenalty, klRewardPenalty, type RolloutOptions, type RolloutResult } from './train/steps.js';
export { policyUpdate, criticUpdate, sftUpdate, microBatchShare, type UpdateResult, type PolicyUpdateOptions, type CriticUpdateOptions } from './train/update.js';
export { sftStep, rlStep, stepSeed, type StepContext } from './train/step.js';
export { DataParallel, mainFirst, rankDevice, type Collectives, type DataParallelOptions } from './train/data-parallel.js';
export { GradientBuckets } from './train/gradient-buckets.js';
export type { ParallelUpdate } from './train/update.js';
export { packSequences, responseOffsets, rowPrompt, microBatches, type Sequence, type RolloutSample } from './train/samples.js';
export { evaluateRows, type EvaluateOptions, type Evaluation } from './train/evaluate.js';
export { MetricsLog, readMetrics, rolloutMetrics, formatStep, type StepMetrics } from './train/metrics.js';
export { createProgress, noProgress, type Progress } from './train/progress.js';
export { writeReport, stageTable, correlation, chartSpecs, REPORT_FILE, type ReportData, type ReportRun, type StageEvaluation as ReportStageEvaluation, type MetricRecord, type StageRow, type ChartSpec } from './cli/report/index.js';
