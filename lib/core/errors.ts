/** What went wrong, for callers that branch on the kind of failure. */
export type R1VErrorCode =
  | 'ARGUMENT'
  | 'SHAPE'
  | 'DTYPE'
  | 'DEVICE'
  | 'DISPOSED'
  | 'OOM'
  | 'CUDA'
  | 'IO'
  | 'CONFIG'
  /** A collective failed or timed out (lib/ops/collectives.ts), or the collectives backend is missing. */
  | 'DISTRIBUTED';

const CODES: ReadonlySet<string> = new Set<R1VErrorCode>([
  'ARGUMENT', 'SHAPE', 'DTYPE', 'DEVICE', 'DISPOSED', 'OOM', 'CUDA', 'IO', 'CONFIG', 'DISTRIBUTED',
]);

/** Every error r1v raises, from TypeScript or from the native core, is an R1VError. */
export class R1VError extends Error {
  readonly code: R1VErrorCode;

  constructor(code: R1VErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'R1VError';
    this.code = CODES.has(code) ? code : 'ARGUMENT';
  }
}
