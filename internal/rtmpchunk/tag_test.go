package rtmpchunk

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// TestTags writes messages with gortmplib's message writer and reads them
// with Reader and the tag readers: coded frames come back with their
// composition time and data, everything else is refused.
func TestTags(t *testing.T) {
	au := []byte{0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x41}
	for _, c := range []struct {
		name string
		msg  message.Message
		ok   bool
		cts  int32
		data []byte
	}{
		{"legacy AVC", &message.Video{ChunkStreamID: 6, Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeAU, DTS: 40 * time.Millisecond, PTSDelta: 80 * time.Millisecond, AU: au}, true, 80, au},
		{"legacy AVC, negative composition time", &message.Video{ChunkStreamID: 6, Codec: message.CodecH264, Type: message.VideoTypeAU, PTSDelta: -40 * time.Millisecond, AU: au}, true, -40, au},
		{"legacy HEVC (codec id 12)", &message.Video{ChunkStreamID: 6, Codec: message.CodecH265, Type: message.VideoTypeAU, PTSDelta: 0, AU: au}, true, 0, au},
		{"legacy AVC sequence header", &message.Video{ChunkStreamID: 6, Codec: message.CodecH264, Type: message.VideoTypeConfig, AVCConfig: &mp4.AVCDecoderConfiguration{
			AnyTypeBox: mp4.AnyTypeBox{Type: mp4.BoxTypeAvcC()}, ConfigurationVersion: 1, LengthSizeMinusOne: 3,
			NumOfSequenceParameterSets: 1, SequenceParameterSets: []mp4.AVCParameterSet{{Length: 2, NALUnit: []byte{0x67, 1}}},
			NumOfPictureParameterSets: 1, PictureParameterSets: []mp4.AVCParameterSet{{Length: 2, NALUnit: []byte{0x68, 1}}},
		}}, false, 0, nil},
		{"legacy AVC end of sequence", &message.Video{ChunkStreamID: 6, Codec: message.CodecH264, Type: message.VideoTypeEOS}, false, 0, nil},
		{"enhanced HEVC CodedFrames", &message.VideoExCodedFrames{ChunkStreamID: 6, FourCC: message.FourCCHEVC, PTSDelta: 120 * time.Millisecond, Payload: au}, true, 120, au},
		{"enhanced AVC CodedFrames", &message.VideoExCodedFrames{ChunkStreamID: 6, FourCC: message.FourCCAVC, PTSDelta: -1 * time.Millisecond, Payload: au}, true, -1, au},
		{"enhanced HEVC CodedFramesX", &message.VideoExFramesX{ChunkStreamID: 6, FourCC: message.FourCCHEVC, Payload: au}, true, 0, au},
		{"enhanced AV1 CodedFrames", &message.VideoExCodedFrames{ChunkStreamID: 6, FourCC: message.FourCCAV1, Payload: au}, false, 0, nil},
		{"enhanced HEVC sequence end", &message.VideoExSequenceEnd{ChunkStreamID: 6, FourCC: message.FourCCHEVC}, false, 0, nil},
		{"AAC frame", &message.Audio{ChunkStreamID: 4, Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true, AACType: message.AudioAACTypeAU, AU: []byte{0x21, 0x10, 5}}, true, 0, []byte{0x21, 0x10, 5}},
		{"AAC config", &message.Audio{ChunkStreamID: 4, Codec: message.CodecMPEG4Audio, AACType: message.AudioAACTypeConfig, AACConfig: &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 44100, ChannelCount: 2}}, false, 0, nil},
		{"MP3 frame", &message.Audio{ChunkStreamID: 4, Codec: message.CodecMPEG1Audio, AU: []byte{0xff, 0xfb, 1}}, false, 0, nil},
		{"Opus frame", &message.AudioExCodedFrames{ChunkStreamID: 4, FourCC: message.FourCCOpus, Payload: []byte{1, 2}}, false, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := message.NewWriter(&buf, bytecounter.NewWriter(io.Discard), false).Write(c.msg); err != nil {
				t.Fatal(err)
			}
			m, err := (&Reader{R: &buf}).Read()
			if err != nil {
				t.Fatal(err)
			}
			var (
				cts  int32
				data []byte
				ok   bool
			)
			switch m.Type {
			case TypeVideo:
				cts, data, ok = VideoFrame(m.Body)
			case TypeAudio:
				data, ok = AACFrame(m.Body)
			default:
				t.Fatalf("message type %d", m.Type)
			}
			if ok != c.ok || cts != c.cts || !bytes.Equal(data, c.data) {
				t.Fatalf("got %v %d %x, want %v %d %x", ok, cts, data, c.ok, c.cts, c.data)
			}
		})
	}
}
