-- What a model's width and height must be multiples of, in pixels: the VAE's scale factor times
-- the UNet's downsampling (an ONNX export's upsamplers double their input, so every latent side
-- must divide by 2^(down blocks - 1)): 64 for SD 1.x/2.x, 32 for SDXL. Workers set it when they
-- register; 8 (the VAE alone) until then.
ALTER TABLE models ADD COLUMN size_multiple INT NOT NULL DEFAULT 8;
