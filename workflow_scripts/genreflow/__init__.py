"""genreflow: music genre classification by transfer learning on spectrogram images."""
