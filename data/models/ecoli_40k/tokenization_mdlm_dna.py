"""Character-level DNA tokenizer of an mdlm-dna model (remote code; does not import mdlm_dna).

One id per character, read from ``vocab.json``: A C G T N, then [MASK] [PAD] [BOS] [EOS] [UNK]. Lower case is
upper-cased, U (RNA) is read as T and the IUPAC ambiguity codes as N, as mdlm-dna's own tokenizer does; no
special tokens are added around a sequence (the models were trained on bare windows).

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    tok(["ACGTNACGT"], return_tensors="pt")["input_ids"]      # tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
"""

import json
import os

from transformers import PreTrainedTokenizer

VOCAB_FILE = "vocab.json"
ALIASES = {"U": "T", **{code: "N" for code in "RYSWKMBDHV"}}


class MDLMDNATokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, mask_token="[MASK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
                 unk_token="[UNK]", **kwargs):
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab = {str(k): int(v) for k, v in json.load(f).items()}
        self.ids_to_tokens = {v: k for k, v in self.vocab.items()}
        super().__init__(mask_token=mask_token, pad_token=pad_token, bos_token=bos_token, eos_token=eos_token,
                         unk_token=unk_token, **kwargs)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return dict(self.vocab)

    def _tokenize(self, text, **kwargs):
        return [ALIASES.get(c, c) for c in text.upper()]

    def _convert_token_to_id(self, token):
        return self.vocab.get(token, self.vocab.get(str(self.unk_token)))

    def _convert_id_to_token(self, index):
        return self.ids_to_tokens.get(int(index), str(self.unk_token))

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        return list(token_ids_0) + (list(token_ids_1) if token_ids_1 else [])

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        return [0] * (len(token_ids_0) + (len(token_ids_1) if token_ids_1 else 0))

    def save_vocabulary(self, save_directory, filename_prefix=None):
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, indent=1)
        return (path,)
