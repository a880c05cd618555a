// Public surface of the tokenizer module.
export { Tokenizer, type DecodeOptions, type EncodeOptions, type TokenizerConfig } from './tokenizer.js';
export { type FromGGUFOptions, type GGUFValue } from './from-gguf.js';
export { ChatTemplateError, renderChat, type ChatMessage, type RenderChatOptions } from './chat-template.js';
