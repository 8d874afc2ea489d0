"""DeepSpeech2's input: the normalised log-magnitude spectrogram of deepspeech.pytorch's ``ChunkSpectrogramParser``
(``normalize=True``, one chunk: the whole utterance, as LawDNet's extraction runs it).

20 ms Hamming windows every 10 ms (n_fft 320, hop 160 at 16 kHz), ``librosa.stft`` centred (zero padding,
librosa >= 0.10), magnitude, ``log1p``, then the utterance's mean subtracted and its (unbiased) standard
deviation divided out. ``N`` samples give ``1 + N // 160`` columns.
"""
from __future__ import annotations

import librosa
import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 320  # 0.02 s
HOP = 160  # 0.01 s


def spectrogram(wav: np.ndarray) -> torch.Tensor:
    """``(161, 1 + N // 160)`` float32 normalised log spectrogram of ``(N,)`` float audio in [-1, 1] at 16 kHz."""
    y = np.asarray(wav, dtype=np.float32)  # torchaudio.load's float32 samples
    magnitude, _ = librosa.magphase(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window="hamming"))
    spect = torch.from_numpy(np.log1p(magnitude)).float()
    return (spect - spect.mean()) / spect.std()
